"""charlm's version: its own module, so that the modules that record it in their files (checkpoints,
token caches) need not import the package's `__init__` (the public API above them)."""

__version__ = "0.1.0"
