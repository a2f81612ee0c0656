"""The Couchbase SDK (4.x, ``acouchbase``), imported on first use: the store's one contact with it."""

from __future__ import annotations

import dataclasses
from typing import Any

EXTRA_HINT = "the Couchbase store needs the couchbase SDK: pip install 'wojak[couchbase]'"


def load_sdk() -> Sdk:
    """The SDK modules, imported on first use."""
    try:
        import couchbase.exceptions as exc
        import couchbase.subdocument as sd
        from acouchbase.cluster import Cluster
        from couchbase.auth import PasswordAuthenticator
        from couchbase.options import (
            ClusterOptions,
            ClusterTimeoutOptions,
            IncrementOptions,
            InsertOptions,
            MutateInOptions,
            ReplaceOptions,
            SignedInt64,
        )
        from couchbase.subdocument import StoreSemantics
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(EXTRA_HINT) from e
    return Sdk(
        exc,
        sd,
        Cluster,
        PasswordAuthenticator,
        ClusterOptions,
        ClusterTimeoutOptions,
        IncrementOptions,
        InsertOptions,
        MutateInOptions,
        ReplaceOptions,
        SignedInt64,
        StoreSemantics,
    )


@dataclasses.dataclass(frozen=True)
class Sdk:
    exc: Any
    sd: Any
    Cluster: Any
    PasswordAuthenticator: Any
    ClusterOptions: Any
    ClusterTimeoutOptions: Any
    IncrementOptions: Any
    InsertOptions: Any
    MutateInOptions: Any
    ReplaceOptions: Any
    SignedInt64: Any
    StoreSemantics: Any

    @property
    def ambiguous(self) -> tuple[type[BaseException], ...]:
        e = self.exc
        return (e.AmbiguousTimeoutException, e.DurabilitySyncWriteAmbiguousException, e.RequestCanceledException)

    @property
    def unavailable(self) -> tuple[type[BaseException], ...]:
        e = self.exc
        return (
            e.AmbiguousTimeoutException,
            e.UnAmbiguousTimeoutException,
            e.TimeoutException,
            e.ServiceUnavailableException,
            e.RequestCanceledException,
            e.TemporaryFailException,
            e.MissingConnectionException,
            e.DurabilitySyncWriteAmbiguousException,
            e.DurabilitySyncWriteInProgressException,
            e.DocumentLockedException,
        )
