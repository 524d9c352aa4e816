"""A plugin whose import calls sys.exit(): it must be skipped like any failing plugin."""

import sys

sys.exit(3)
