"""Principals: names, account patterns and scopes, stated at their edges (the rules every
sidecar and the engine apply before anything else)."""

from __future__ import annotations

import pytest

from wojak.engine.protocol import ALL_SCOPES, Principal, PrincipalError, Scope, forbidden
from wojak.engine.protocol._principals import ACCOUNT_NOT_PERMITTED, PRINCIPAL_MISSING, SCOPE_MISSING

DESK = Principal.of("desk-a.algo:1@x", ["desk-a", "desk-a-*", "d?"], [Scope.ORDERS_WRITE, "orders:read"])


def test_scopes_are_the_four_named_ones():
    assert ALL_SCOPES == {"orders:write", "orders:read", "ticks:write", "accounts:admin"}
    assert (SCOPE_MISSING, ACCOUNT_NOT_PERMITTED, PRINCIPAL_MISSING) == ("scope_missing", "account_not_permitted",
                                                                         "principal_missing")  # fmt: skip


@pytest.mark.parametrize("name", ["a", "x" * 64, "desk-1.algo:2@host_-"[:64].replace("_", "-")])
def test_names_in_the_alphabet_of_1_to_64_characters_are_accepted(name):
    assert Principal.of(name).name == name


@pytest.mark.parametrize("name", ["", "x" * 65, "desk a", "desk/a", "déjà", "a*", None, 5])
def test_other_names_are_refused(name):
    with pytest.raises(PrincipalError, match="principal name"):
        Principal.of(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("pattern", ["a", "*", "desk-?", "x" * 64, "A.b:c-d_*"[:9].replace("_", "-")])
def test_account_patterns_use_the_account_alphabet_and_wildcards(pattern):
    assert Principal.of("p", [pattern]).accounts == (pattern,)


@pytest.mark.parametrize("pattern", ["", "x" * 65, "desk[ab]", "desk a", "desk/a", 5])
def test_other_account_patterns_are_refused(pattern):
    with pytest.raises(PrincipalError, match="principal p: account pattern"):
        Principal.of("p", [pattern])  # type: ignore[list-item]


def test_unknown_scopes_are_refused_by_name():
    with pytest.raises(PrincipalError, match=r"principal p: unknown scope\(s\) \['root'\]; use accounts:admin, orders:read"):
        Principal.of("p", ["a"], ["orders:write", "root"])


@pytest.mark.parametrize("account, permitted", [
    ("desk-a", True), ("desk-a-hedge", True), ("desk-a-", True), ("da", True), ("desk-ab", False), ("desk-b", False),
    ("DESK-A", False), ("d", False), ("dab", False), ("", False),
])  # fmt: skip
def test_patterns_match_whole_accounts_case_sensitively(account, permitted):
    assert DESK.permits(account) is permitted


def test_no_patterns_permit_nothing():
    assert not Principal.of("feed", [], [Scope.TICKS_WRITE]).permits("anything")


def test_scopes_are_checked_one_by_one():
    assert DESK.may(Scope.ORDERS_WRITE) and DESK.may(Scope.ORDERS_READ)
    assert not DESK.may(Scope.TICKS_WRITE) and not DESK.may(Scope.ACCOUNTS_ADMIN)


def test_refusal_names_the_missing_scope_before_the_account():
    assert DESK.refusal(Scope.ORDERS_WRITE) is None
    assert DESK.refusal(Scope.ORDERS_WRITE, "desk-a") is None
    assert DESK.refusal(Scope.TICKS_WRITE, "desk-b") == (SCOPE_MISSING, "principal desk-a.algo:1@x lacks the ticks:write scope")
    assert DESK.refusal(Scope.ORDERS_READ, "desk-b") == (
        ACCOUNT_NOT_PERMITTED, "principal desk-a.algo:1@x may not act for account desk-b")


@pytest.mark.parametrize("accounts, single", [
    (["desk-1"], "desk-1"), (["desk-*"], None), (["desk-?"], None), (["a", "b"], None), ([], None),
])  # fmt: skip
def test_single_account_is_one_literal_pattern(accounts, single):
    assert Principal.of("p", accounts).single_account == single


def test_the_wire_form_round_trips_and_is_sorted():
    wire = DESK.to_wire()
    assert wire == {"name": "desk-a.algo:1@x", "accounts": ["desk-a", "desk-a-*", "d?"], "scopes": ["orders:read", "orders:write"]}
    assert Principal.from_wire(wire) == DESK


@pytest.mark.parametrize("raw, words", [
    (None, r"^principal must be a map \{name, accounts, scopes\}$"), ("root", "must be a map"), (["x"], "must be a map"),
    ({"name": "x", "accounts": "*", "scopes": []}, "^principal accounts and scopes must be lists$"),
    ({"name": "x", "accounts": ["*"], "scopes": "orders:read"}, "must be lists"),
    ({"name": "x", "scopes": []}, "must be lists"),
    ({"name": "x", "accounts": ["a"] * 257, "scopes": []}, "must be lists"),
    ({"name": "x", "accounts": [], "scopes": ["orders:read"] * 17}, "must be lists"),
    ({"name": "x", "accounts": ["*"], "scopes": ["root"]}, "unknown scope"),
    ({"accounts": ["*"], "scopes": []}, "principal name"),
])  # fmt: skip
def test_a_malformed_wire_principal_is_refused(raw, words):
    with pytest.raises(PrincipalError, match=words):
        Principal.from_wire(raw)


def test_the_wire_limits_are_inclusive():
    assert len(Principal.from_wire({"name": "x", "accounts": ["a"] * 256, "scopes": []}).accounts) == 256
    assert Principal.from_wire({"name": "x", "accounts": [], "scopes": sorted(ALL_SCOPES) * 4}).scopes == ALL_SCOPES


def test_forbidden_reply():
    assert forbidden("scope_missing", "why") == {"verdict": "forbidden", "reason": "scope_missing", "detail": "why"}
    assert forbidden("account_not_permitted", "why", "c-1") == {
        "verdict": "forbidden", "reason": "account_not_permitted", "detail": "why", "client_order_id": "c-1"}
