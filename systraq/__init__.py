"""systraq: a file integrity monitor for Linux servers."""

__version__ = "0.1.0"
