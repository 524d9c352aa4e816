"""Diffusion priors: the room every solver with a DDPM prior uses (DDRM, ΠGDM, third parties).

* :mod:`solvers.priors.protocol` -- the prior protocol (:class:`DiffusionPrior`), its check
  (:func:`check_prior`) and the checked model call of every solver (:func:`predict_eps`, with or
  without autograd);
* :mod:`solvers.priors.schedules` -- the linear β schedule, the timestep grids and the reverse
  VP step the guided samplers share;
* :mod:`solvers.priors.unet` -- :class:`UNetPrior`, the adapter for diffusers and ADM networks;
* :mod:`solvers.priors.loading` -- :func:`load_prior` and :func:`save_prior`;
* :mod:`solvers.priors.adm` -- the guided-diffusion (ADM) network;
* :mod:`solvers.priors.checkpoints` -- the field's pretrained checkpoints and their reading;
* :mod:`solvers.priors.training` -- training a prior (the bundled default model).

The exact oracles (:class:`~solvers.oracles.OraclePrior`, :class:`~solvers.oracles.GaussianPrior`)
live in :mod:`solvers.oracles`, beside DriftRec's.
"""

from solvers.priors.loading import DEFAULT_PRIOR_DIR, SETTINGS_FILE, load_prior, save_prior
from solvers.priors.protocol import (
    DiffusionPrior,
    check_alphas_cumprod,
    check_prior,
    predict_eps,
    timestep_index,
)
from solvers.priors.schedules import (
    BETA_END,
    BETA_START,
    ancestral_std,
    linear_alphas_cumprod,
    quadratic_timesteps,
    renoise,
    uniform_timesteps,
)
from solvers.priors.unet import UNetPrior

__all__ = [
    "BETA_END",
    "BETA_START",
    "DEFAULT_PRIOR_DIR",
    "SETTINGS_FILE",
    "DiffusionPrior",
    "UNetPrior",
    "ancestral_std",
    "check_alphas_cumprod",
    "check_prior",
    "linear_alphas_cumprod",
    "load_prior",
    "predict_eps",
    "quadratic_timesteps",
    "renoise",
    "save_prior",
    "timestep_index",
    "uniform_timesteps",
]
