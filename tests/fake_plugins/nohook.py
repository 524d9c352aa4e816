"""A module published as a plugin that defines no hook."""
