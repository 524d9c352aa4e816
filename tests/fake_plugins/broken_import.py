"""A plugin that cannot even be imported."""

raise ImportError("missing_dependency_xyz is not installed")
