"""The engine: protocol, domain, risk, venue, store and transport.

Sidecars may import :mod:`wojak.engine.protocol` and nothing else from here
(enforced by the import-linter contract in ``pyproject.toml``).
"""

__version__ = "0.1.0"
