"""afetch: fetch HTTP response headers from many hosts at once."""

__version__ = "0.1.0"
