"""wojak: a small, fast, fail-closed trade-execution engine that any message broker can feed."""

__version__ = "0.1.0"
