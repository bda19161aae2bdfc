"""replikv: a replicated key-value store spoken to over the Redis protocol."""

__version__ = "0.1.0"
