"""The ``opkit`` command line: the one composition root that may import everything.

Nothing imports this package; it composes the registry (:mod:`opkit`), the plugins (through
the registry) and the solvers.
"""

from opkit_cli.main import main

__all__ = ["main"]
