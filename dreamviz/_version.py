"""The package version (layer 0): pyproject.toml reads it from here."""

__version__ = "0.3.0"
