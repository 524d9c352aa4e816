"""The built-in solvers register through the same entry-point hook as third-party ones.

``pyproject.toml`` publishes this module under the ``opkit`` entry-point group; its
``opkit_register_solvers`` hook adds DDRM, DriftRec and ΠGDM with the operator kinds they take,
the model they need and an oracle model for :func:`opkit.testing.check_solver`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

import opkit
from solvers.ddrm.priors import OraclePrior
from solvers.ddrm.solver import ddrm
from solvers.driftrec.sdes import DriftSDE, get_sde
from solvers.driftrec.solver import driftrec
from solvers.pigdm.solver import PIGDM_ACCEPTS, pigdm


class PointScore:
    r"""The exact score of DriftRec's perturbation kernel around known clean images.

    For clean images :math:`x_0` the kernel is :math:`\mathcal N(\mu_t(x_0, y), \sigma_t^2 I)`, whose
    score is :math:`-(x_t - \mu_t)/\sigma_t^2`: the score of a data distribution that is a point
    mass at :math:`x_0`. A batch that is a multiple ``k`` of ``x0``'s is matched by repeating each
    image ``k`` times consecutively.

    Parameters
    ----------
    x0 : torch.Tensor
        ``(B, C, H, W)`` clean images in ``[0, 1]``.
    sde : DriftSDE or str
        The forward SDE (``"ouve"`` by default, DriftRec's default).
    """

    def __init__(self, x0: Tensor, sde: DriftSDE | str = "ouve") -> None:
        self.x0 = x0
        self.sde = get_sde(sde)

    def __call__(self, x_t: Tensor, y: Tensor, t: Tensor) -> Tensor:
        """The score at ``x_t`` for the degraded images ``y`` at times ``t`` (``(B,)``)."""
        k = x_t.shape[0] // self.x0.shape[0]
        x0 = self.x0.to(x_t).repeat_interleave(k, dim=0)
        tt = float(t.reshape(-1)[0])
        return -(x_t - self.sde.mean(x0, y, tt)) / self.sde.std(tt) ** 2


@opkit.hookimpl
def opkit_register_solvers(registry: Any) -> None:
    """Register ``ddrm``, ``driftrec`` and ``pigdm``."""
    registry.add_solver(
        "ddrm",
        ddrm,
        accepts=("svd", "encode_decode"),
        model="prior",
        description="DDRM (Kawar et al. 2022): spectral SVD updates; DDRM-JPEG for encode/decode pairs",
        oracle=OraclePrior,
        generator_per_image=True,
    )
    registry.add_solver(
        "pigdm",
        pigdm,
        accepts=PIGDM_ACCEPTS,
        model="prior",
        description="ΠGDM (Song et al. 2023): pseudoinverse-guided diffusion, H† or Decode guidance",
        oracle=OraclePrior,
    )
    # DriftRec stops at t_eps = 0.03 and returns the mean there, e^{-Φ} x0 + (1 - e^{-Φ}) y with
    # 1 - e^{-Φ(t_eps)} = 1 - e^{-0.03} ≈ 0.03 for the OUVE SDE, so even an exact score leaves
    # 0.03 |y - x0| <= 0.03; Euler-Maruyama with the kit's 8 steps adds about 0.05 (measured
    # 0.08 in all on the kit's problems). The colour correction, which moves each channel's mean
    # to the degraded image's, is switched off for the check.
    registry.add_solver(
        "driftrec",
        driftrec,
        accepts=("svd", "linear", "encode_decode"),
        model="driftrec",
        description="DriftRec (Welker et al.): blind conditional SDE restoration of the degraded image",
        oracle=PointScore,
        recovery_atol=0.1,
        check_options={"color_correction": False},
    )
