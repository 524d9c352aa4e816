"""The built-in solvers register through the same entry-point hook as third-party ones.

``pyproject.toml`` publishes this module under the ``opkit`` entry-point group; its
``opkit_register_solvers`` hook adds DDRM, DiffPIR, DPS, DriftRec and ΠGDM with the operator kinds
they take, the model they need, their settings per operator and an oracle model for
:func:`opkit.testing.check_solver`.
"""

from __future__ import annotations

from typing import Any

import opkit
from solvers.methods.ddrm import ddrm, ddrm_settings
from solvers.methods.diffpir import DIFFPIR_ACCEPTS, diffpir, diffpir_settings
from solvers.methods.dps import DPS_ACCEPTS, dps, dps_settings
from solvers.methods.driftrec import driftrec, driftrec_fits, driftrec_settings
from solvers.methods.pigdm import PIGDM_ACCEPTS, pigdm
from solvers.oracles import OraclePrior, PointScore


@opkit.hookimpl
def opkit_register_solvers(registry: Any) -> None:
    """Register ``ddrm``, ``diffpir``, ``dps``, ``driftrec`` and ``pigdm``."""
    registry.add_solver(
        "ddrm",
        ddrm,
        accepts=("svd", "encode_decode"),
        model="prior",
        description="DDRM (Kawar et al. 2022): spectral SVD updates; DDRM-JPEG for encode/decode pairs",
        oracle=OraclePrior,
        generator_per_image=True,
        settings=ddrm_settings,
    )
    registry.add_solver(
        "pigdm",
        pigdm,
        accepts=PIGDM_ACCEPTS,
        model="prior",
        description="ΠGDM (Song et al. 2023): pseudoinverse-guided diffusion, H† or Decode guidance",
        oracle=OraclePrior,
    )
    # With the oracle, DiffPIR's data step keeps the true image (it fits y exactly) and its last
    # step returns it: exact recovery.
    registry.add_solver(
        "diffpir",
        diffpir,
        accepts=DIFFPIR_ACCEPTS,
        model="prior",
        description="DiffPIR (Zhu et al. 2023): plug-and-play diffusion, exact spectral data step",
        oracle=OraclePrior,
        generator_per_image=True,
        settings=diffpir_settings,
    )
    # With the oracle, DPS's estimate is the true image at every step and does not depend on x_t
    # (its Jacobian is zero up to rounding), so the last step returns the image: exact recovery.
    # recovery_atol stays 0; what DPS's guidance does is tested against exact problems in
    # tests/test_dps.py.
    registry.add_solver(
        "dps",
        dps,
        accepts=DPS_ACCEPTS,
        model="prior",
        description="DPS (Chung et al. 2023): posterior sampling, residual gradient through the network",
        oracle=OraclePrior,
        generator_per_image=True,
        settings=dps_settings,
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
        fits=driftrec_fits,
        settings=driftrec_settings,
    )
