"""Principals: who sent a request, which accounts it may act for, what it may do.

A sidecar authenticates its clients (an API key, a broker's own credentials plus the
sidecar's ``WOJAK_SIDECAR_ACCOUNTS``) and puts the principal into every request. The engine
checks the scope and the account again before anything else, so a request outside them
never reaches risk, the store or the venue.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Iterable

from wojak.errors import WojakError


class Scope(str, enum.Enum):
    ORDERS_WRITE = "orders:write"  # submit and cancel orders of its accounts
    ORDERS_READ = "orders:read"  # read orders of its accounts
    TICKS_WRITE = "ticks:write"  # publish market data (the only way a price reaches risk)
    ACCOUNTS_ADMIN = "accounts:admin"  # halt, reduce or resume its accounts


ALL_SCOPES = frozenset(s.value for s in Scope)
# An account pattern: the account alphabet plus the fnmatch wildcards * and ? (no [...]
# classes, so a pattern means the same in fnmatch and in a store's GLOB).
ACCOUNT_PATTERN = re.compile(r"[A-Za-z0-9._:*?-]{1,64}")
_NAME = re.compile(r"[A-Za-z0-9._:@-]{1,64}")

# Reason codes of a ``forbidden`` verdict.
SCOPE_MISSING = "scope_missing"
ACCOUNT_NOT_PERMITTED = "account_not_permitted"
PRINCIPAL_MISSING = "principal_missing"


class PrincipalError(WojakError, ValueError):
    """A principal (or a keys-file entry) that is not well formed; the message says which part."""


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    accounts: tuple[str, ...] = ()
    scopes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise PrincipalError(f"principal name {self.name!r} must match {_NAME.pattern}")
        for pattern in self.accounts:
            if not isinstance(pattern, str) or not ACCOUNT_PATTERN.fullmatch(pattern):
                raise PrincipalError(f"principal {self.name}: account pattern {pattern!r} must match {ACCOUNT_PATTERN.pattern}")
        unknown = set(self.scopes) - ALL_SCOPES
        if unknown:
            raise PrincipalError(
                f"principal {self.name}: unknown scope(s) {sorted(unknown)}; use {', '.join(sorted(ALL_SCOPES))}"
            )

    @classmethod
    def of(cls, name: str, accounts: Iterable[str] = (), scopes: Iterable[str | Scope] = ()) -> "Principal":
        return cls(name, tuple(accounts), frozenset(s.value if isinstance(s, Scope) else s for s in scopes))

    def may(self, scope: Scope) -> bool:
        return scope.value in self.scopes

    def permits(self, account: str) -> bool:
        return any(fnmatchcase(account, p) for p in self.accounts)

    @property
    def single_account(self) -> str | None:
        """The one account this principal may act for, if its patterns name exactly one literal."""
        if len(self.accounts) == 1 and not any(c in self.accounts[0] for c in "*?"):
            return self.accounts[0]
        return None

    def refusal(self, scope: Scope, account: str | None = None) -> tuple[str, str] | None:
        """``(reason_code, detail)`` if this principal may not do ``scope`` (on ``account``), else None."""
        if scope.value not in self.scopes:
            return SCOPE_MISSING, f"principal {self.name} lacks the {scope.value} scope"
        if account is not None and not self.permits(account):
            return ACCOUNT_NOT_PERMITTED, f"principal {self.name} may not act for account {account}"
        return None

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "accounts": list(self.accounts), "scopes": sorted(self.scopes)}

    @classmethod
    def from_wire(cls, raw: Any) -> "Principal":
        """From a request body's ``principal``; raises ``PrincipalError`` if it is not one."""
        if not isinstance(raw, dict):
            raise PrincipalError("principal must be a map {name, accounts, scopes}")
        name, accounts, scopes = raw.get("name"), raw.get("accounts"), raw.get("scopes")
        if not isinstance(accounts, list) or not isinstance(scopes, list) or len(accounts) > 256 or len(scopes) > 16:
            raise PrincipalError("principal accounts and scopes must be lists")
        return cls(name, tuple(accounts), frozenset(scopes))  # type: ignore[arg-type]


def forbidden(code: str, detail: str, client_order_id: str | None = None) -> dict[str, Any]:
    """The reply to a request outside its principal's scopes or accounts."""
    reply: dict[str, Any] = {"verdict": "forbidden", "reason": code, "detail": detail}
    if client_order_id is not None:
        reply["client_order_id"] = client_order_id
    return reply
