"""DriftRec's room: the solver, its SDEs and samplers, the score model and its training.

* :mod:`solvers.driftrec.solver` -- :func:`driftrec` and :func:`load_driftrec`;
* :mod:`solvers.driftrec.sdes` -- the forward SDEs (OUVE, TSDVE, CosVE);
* :mod:`solvers.driftrec.samplers` -- Euler-Maruyama, Euler-Heun and the probability-flow ODE;
* :mod:`solvers.driftrec.score_models` -- the conditional score network;
* :mod:`solvers.driftrec.training` -- training on (clean, corrupted) pairs.

``solvers.driftrec`` itself is the solver function (DESIGN.md section 2); reach this package's
modules as ``from solvers.driftrec import sdes`` or ``import solvers.driftrec.sdes``.
"""

from solvers.driftrec import samplers, score_models, sdes, solver, training
from solvers.driftrec.solver import driftrec, load_driftrec

__all__ = ["driftrec", "load_driftrec", "samplers", "score_models", "sdes", "solver", "training"]
