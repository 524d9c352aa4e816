"""ΠGDM's room: pseudoinverse-guided diffusion (:mod:`solvers.pigdm.solver`).

It uses DDRM's priors (:mod:`solvers.ddrm.priors`). ``solvers.pigdm`` itself is the solver function.
"""

from solvers.pigdm import solver
from solvers.pigdm.solver import PIGDM_ACCEPTS, pigdm

__all__ = ["PIGDM_ACCEPTS", "pigdm", "solver"]
