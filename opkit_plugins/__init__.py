"""The built-in degradation operators, one module per family.

Each module is a plugin published under the ``opkit`` entry-point group and registers its
operators through :func:`opkit.hookimpl`-decorated ``opkit_register_operators``, exactly as a
third-party plugin would. This package imports nothing from its modules: the registry loads
them through the entry points.
"""
