"""The pluggy registry: entry points, isolation of broken plugins, duplicates, blocking."""

from __future__ import annotations

import warnings
from importlib import metadata

import pytest

import opkit
from opkit.registry import DuplicateOperatorError, OpkitPluginWarning, Registry


def _eps(**named: str) -> list[metadata.EntryPoint]:
    return [metadata.EntryPoint(name=k, value=v, group="opkit") for k, v in named.items()]


def _load(monkeypatch: pytest.MonkeyPatch, eps: list[metadata.EntryPoint], **kw: object) -> Registry:
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [e for e in eps if e.group == group])
    reg = Registry()
    reg.load_entry_points(**kw)  # type: ignore[arg-type]
    return reg


def test_builtins_register_through_entry_points() -> None:
    names = {ep.name: ep.value for ep in metadata.entry_points(group="opkit")}
    assert names.get("denoise") == "opkit_plugins.denoise"
    assert "denoise" in opkit.available()
    assert opkit.default_registry().operator_entry("denoise").plugin == "denoise"


def test_good_plugin_loads_and_creates(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = _load(monkeypatch, _eps(good="tests.fake_plugins.good"))
    assert reg.operator_names() == ["fake_round"]
    op = reg.create("fake_round", shape=(1, 2, 2), levels=3)
    assert op.name == "fake_round" and op.levels == 3  # type: ignore[attr-defined]
    assert reg.operator_entry("fake_round").description.startswith("Round to a grid")
    assert reg.operator_entry("fake_round").parameters() == {"levels": 4}


def test_broken_plugins_warn_by_name_and_others_still_load(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = _eps(
        a_broken="tests.fake_plugins.broken_import",
        b_raises="tests.fake_plugins.raises",
        c_good="tests.fake_plugins.good",
        d_nohook="tests.fake_plugins.nohook",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = _load(monkeypatch, eps)
    msgs = [str(w.message) for w in caught if issubclass(w.category, OpkitPluginWarning)]
    assert any("a_broken" in m and "missing_dependency_xyz" in m for m in msgs)
    assert any("b_raises" in m and "boom while registering" in m for m in msgs)
    assert any("d_nohook" in m for m in msgs)
    assert reg.operator_names() == ["fake_round"]  # b_raises' partial registration rolled back
    assert set(reg.skipped) == {"a_broken", "b_raises", "d_nohook"}


def test_plugins_raising_system_exit_are_skipped_like_any_failing_plugin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eps = _eps(
        a_exit_import="tests.fake_plugins.exits_at_import",
        b_exit_hook="tests.fake_plugins.exits_in_hook",
        c_good="tests.fake_plugins.good",
    )
    with pytest.warns(OpkitPluginWarning) as caught:
        reg = _load(monkeypatch, eps)
    msgs = [str(w.message) for w in caught]
    assert any("a_exit_import" in m and "failed to import" in m and "SystemExit: 3" in m for m in msgs)
    assert any("b_exit_hook" in m and "SystemExit: plugin gave up" in m for m in msgs)
    assert reg.operator_names() == ["fake_round"]  # b_exit_hook's partial registration rolled back
    assert set(reg.skipped) == {"a_exit_import", "b_exit_hook"}


def test_keyboard_interrupt_in_a_plugin_goes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyboardInterrupt):
        _load(monkeypatch, _eps(stop="tests.fake_plugins.interrupts"))


def test_duplicate_name_is_an_error_naming_both_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = _eps(first="tests.fake_plugins.good", second="tests.fake_plugins.duplicate")
    with pytest.warns(OpkitPluginWarning, match=r"'second'.*already registered by plugin 'first'"):
        reg = _load(monkeypatch, eps)
    assert reg.operator_entry("fake_round").plugin == "first"
    with pytest.raises(DuplicateOperatorError, match="fake_round"):
        reg.add_operator("fake_round", lambda shape: None)


def test_builtins_load_before_third_parties(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        metadata.EntryPoint(name="aaa_thirdparty", value="tests.fake_plugins.good", group="opkit"),
        metadata.EntryPoint(name="zzz_builtin", value="opkit_plugins.denoise", group="opkit"),
    ]
    reg = _load(monkeypatch, eps)
    assert reg.operator_entry("denoise").plugin == "zzz_builtin"
    assert reg.operator_names() == ["denoise", "fake_round"]


def test_environment_variable_blocks_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPKIT_DISABLE_PLUGINS", " good , other")
    reg = _load(monkeypatch, _eps(good="tests.fake_plugins.good"))
    assert reg.operator_names() == []
    assert "OPKIT_DISABLE_PLUGINS" in reg.skipped["good"]


def test_unknown_name_lists_available() -> None:
    with pytest.raises(KeyError, match=r"available: .*denoise"):
        opkit.create("no_such_operator", shape=(3, 8, 8))


def test_add_validates_names_and_factories() -> None:
    reg = Registry()
    for bad in ["Bad", "has space", "1abc", ""]:
        with pytest.raises(ValueError, match="lowercase identifier"):
            reg.add_operator(bad, lambda shape: None)
    with pytest.raises(ValueError, match="callable"):
        reg.add_operator("ok", 3)  # type: ignore[arg-type]


def test_factory_must_return_an_operator() -> None:
    reg = Registry()
    reg.add_operator("nothing", lambda shape: object())
    with pytest.raises(TypeError, match=r"not an opkit\.Operator"):
        reg.create("nothing", shape=(1, 1, 1))


def test_reload_rebuilds_the_default_registry() -> None:
    first = opkit.default_registry()
    again = opkit.reload()
    assert again is not first
    assert again.operator_names() == first.operator_names()


class _Writes:
    """A format plugin that writes every operator's measurement as ``.x`` bytes."""

    def __init__(self, data: bytes, fail: bool = False) -> None:
        self.data, self.fail = data, fail

    @opkit.hookimpl
    def opkit_write_measurement(self, op: object, x: object, suffix: str | None) -> tuple[str, bytes]:
        return ".x", self.data

    @opkit.hookimpl
    def opkit_register_operators(self, registry: Registry) -> None:
        if self.fail:
            raise RuntimeError("gave up")


class _WritesFirst:
    """A format plugin that asks pluggy to be asked first."""

    @opkit.hookimpl(tryfirst=True)
    def opkit_write_measurement(self, op: object, x: object, suffix: str | None) -> tuple[str, bytes]:
        return ".x", b"eager"


def test_file_hooks_are_one_plugin_managers_firstresult_asked_in_load_order() -> None:
    import torch

    import opkit_plugins.jpeg

    reg = Registry()
    assert reg.register_plugin(opkit_plugins.jpeg, "jpeg")
    assert reg.register_plugin(_Writes(b"late"), "late")
    with pytest.warns(OpkitPluginWarning, match="gave up"):
        assert not reg.register_plugin(_Writes(b"broken", fail=True), "broken")  # its hooks leave too
    x = torch.rand(1, 3, 16, 16)
    jpeg, denoise = opkit.create("jpeg", shape=(3, 16, 16)), opkit.create("denoise", shape=(3, 16, 16))
    assert reg.write_measurement(jpeg, x)[0] == ".jpg"  # type: ignore[index]  # the built-in, first
    assert reg.write_measurement(denoise, x) == (".x", b"late")  # the jpeg plugin answered None
    assert reg.register_plugin(_WritesFirst(), "eager")
    assert reg.write_measurement(jpeg, x) == (".x", b"eager")  # tryfirst is asked before the rest
