"""Shared pytest configuration: hypothesis profiles, the ``slow`` marker and shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from tests.helpers import single_thread

# fake plugin modules are imported by the registry tests, never collected (one cannot be imported)
collect_ignore = ["fake_plugins"]

settings.register_profile(
    "default",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.register_profile(
    "thorough",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests unless ``OPKIT_SLOW=1`` or ``-m slow`` is given."""
    if os.environ.get("OPKIT_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: set OPKIT_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread during each test (``pytest.mark.usefixtures("one_thread")``)."""
    with single_thread():
        yield


@pytest.fixture(scope="module")
def one_thread_per_module() -> Iterator[None]:
    """torch on one thread for a whole module (``pytest.mark.usefixtures("one_thread_per_module")``)."""
    with single_thread():
        yield


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained diffusers prior (UNet and linear DDPM schedule), for command-line tests."""
    from diffusers import DDPMScheduler

    from solvers.priors.training import build_prior_unet

    d = tmp_path_factory.mktemp("models") / "prior"
    build_prior_unet("tiny", sample_size=16).save_pretrained(str(d / "unet"), safe_serialization=True)
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").save_pretrained(str(d / "scheduler"))
    return d
