"""``open_store``: a store from its URL (``WOJAK_STORE``). The one module that knows every
store; the stores know only the protocol (``_base``)."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlparse

from wojak.engine.store._base import Store
from wojak.engine.store._couchbase import from_url  # the SDK itself is imported when a store connects
from wojak.engine.store._sqlite import SQLiteStore
from wojak.errors import ConfigError


def open_store(url: str) -> Store:
    """A store from its URL: ``sqlite:///PATH[?synchronous=normal|full|extra]`` (default full), or
    ``couchbase://HOST[,HOST...]?bucket=NAME[&scope=S&collection=C&prefix=P]`` with credentials in
    ``WOJAK_COUCHBASE_USERNAME`` / ``WOJAK_COUCHBASE_PASSWORD`` (``couchbases://`` for TLS)."""
    parsed = urlparse(url)
    if parsed.scheme in ("couchbase", "couchbases"):
        username = os.environ.get("WOJAK_COUCHBASE_USERNAME", "")
        password = os.environ.get("WOJAK_COUCHBASE_PASSWORD", "")
        if not username or not password:
            raise ConfigError(f"WOJAK_STORE={url!r}: set WOJAK_COUCHBASE_USERNAME and WOJAK_COUCHBASE_PASSWORD")
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return from_url(parsed, options, username, password)
    if parsed.scheme == "sqlite":
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        # sqlite:///relative/path and sqlite:////absolute/path, as in SQLAlchemy
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        if parsed.netloc or not path:
            raise ConfigError(f"WOJAK_STORE={url!r}: write sqlite:///relative/path or sqlite:////absolute/path")
        try:
            min_free = int(options.get("min_free_bytes", 1 << 20))
        except ValueError:
            raise ConfigError(f"WOJAK_STORE={url!r}: min_free_bytes must be a whole number of bytes") from None
        return SQLiteStore(path, synchronous=options.get("synchronous", "full"), min_free_bytes=min_free)
    raise ConfigError(
        f"WOJAK_STORE={url!r}: unsupported scheme {parsed.scheme!r} (use sqlite:///PATH or couchbase://HOST?bucket=NAME)"
    )
