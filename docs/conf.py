"""Sphinx configuration for opkit."""

from __future__ import annotations

import opkit

project = "opkit"
author = "opkit developers"
copyright = "2026, opkit developers"
release = opkit.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
nitpicky = False
suppress_warnings = ["config.cache"]
html_theme = "furo"
html_title = "opkit"
html_static_path = ["_static"]
exclude_patterns = ["_build"]
# Docstring examples are run by pytest --doctest-modules (with their module's globals); the
# Sphinx doctest builder runs the explicit ``.. doctest::`` blocks of the narrative pages.
doctest_test_doctest_blocks = ""
