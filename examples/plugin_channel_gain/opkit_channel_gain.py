"""An operator plugin in about twenty lines: per-channel gains ``y_c = g_c x_c``.

``U = V = I`` and the singular values are the gains, so a subclass of
:class:`opkit.SVDOperator` only states the factors; forward, adjoint and pseudo-inverse
(which leaves a dead channel, gain 0, at zero) are derived.
"""

import torch
from hypothesis import strategies as st

import opkit
from opkit.testing.strategies import shapes


class ChannelGain(opkit.SVDOperator):
    """Multiply channel ``c`` by ``gains[c]`` (non-negative; 0 = dead channel)."""

    def __init__(self, shape, gains):
        super().__init__(shape)
        g = torch.as_tensor(gains, dtype=torch.float64)
        if g.shape != (self.shape[0],) or not bool(torch.isfinite(g).all()) or bool((g < 0).any()):
            raise ValueError(f"gains must be {self.shape[0]} finite non-negative numbers, got {gains!r}")
        self._s = g.view(-1, 1, 1)

    out_shape = property(lambda self: self.shape)
    singulars = property(lambda self: self._s)
    Vt = V = Ut = U = staticmethod(lambda t: t)


def channel_gain(*, shape, gains=(1.0, 0.5, 0.0)):
    """Per-channel gains (example third-party plugin)."""
    return ChannelGain(shape, gains)


_params = shapes(channels=3).flatmap(
    lambda s: st.fixed_dictionaries(
        {
            "shape": st.just(s),
            "gains": st.lists(st.integers(0, 400).map(lambda k: k / 100), min_size=3, max_size=3),
        }
    )
)


@opkit.hookimpl
def opkit_register_operators(registry):
    registry.add_operator("channel_gain", channel_gain, strategy=_params)
