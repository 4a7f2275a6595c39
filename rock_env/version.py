"""The package's version (one place; ``rock_env.__version__`` and the server's ``/health`` read it)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
