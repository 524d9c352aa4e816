"""DriftRec's models: the forward SDEs, their samplers, the score network and its training.

* :mod:`solvers.sdes.forward` -- the drift SDEs (:class:`OUVE`, :class:`TSDVE`, :class:`CosVE`),
  whose names are also here (``solvers.sdes.OUVE``);
* :mod:`solvers.sdes.samplers` -- Euler–Maruyama, Euler–Heun and the probability-flow ODE;
* :mod:`solvers.sdes.score_models` -- the conditional score network and
  :func:`~solvers.sdes.score_models.load_driftrec`;
* :mod:`solvers.sdes.training` -- training on (clean, corrupted) pairs.

The solver itself is :func:`solvers.driftrec` (:mod:`solvers.methods.driftrec`).
"""

from solvers.sdes.forward import OUVE, SDE_NAMES, TSDVE, CosVE, DriftSDE, SDEParams, get_sde

__all__ = ["OUVE", "SDE_NAMES", "TSDVE", "CosVE", "DriftSDE", "SDEParams", "get_sde"]
