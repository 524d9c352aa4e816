"""The public testing kit: operator laws, the solver contract and hypothesis strategies.

``check_operator(op)`` checks every law of the pseudo-inverse contract that applies to ``op``
and raises an ``AssertionError`` naming each failing law and the error measured.
``check_solver(solver)`` checks the solver contract (oracle recovery, callback, seeding, batch
independence, errors) on a small operator of each kind the solver accepts.
``strategies`` has hypothesis strategies for images and for any registered operator.
Plugin authors use both in their own test suites::

    from hypothesis import given
    from opkit.testing import check_operator, strategies

    @given(strategies.operators(["my_op"]))
    def test_my_op(op):
        check_operator(op)
"""

from opkit.testing import strategies
from opkit.testing._check import OperatorReport, check_operator, default_rtol
from opkit.testing._solver import SolverReport, check_solver, toy_operators

__all__ = [
    "OperatorReport",
    "SolverReport",
    "check_operator",
    "check_solver",
    "default_rtol",
    "strategies",
    "toy_operators",
]
