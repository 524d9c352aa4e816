"""The public testing kit: operator laws and hypothesis strategies.

``check_operator(op)`` checks every law of the pseudo-inverse contract that applies to ``op``
and raises an ``AssertionError`` naming each failing law and the error measured.
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

__all__ = ["OperatorReport", "check_operator", "default_rtol", "strategies"]
