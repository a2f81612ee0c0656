"""WOJAK_SIDECAR_CARRIES: what a broker source carries (orders, or ticks), and the principal the
sidecar acts as for it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from wojak.engine.protocol import Scope
from wojak.errors import ConfigError
from wojak.sidecars._core.serve import sidecar_principal
from wojak.sidecars._core.settings import BrokerSidecarSettings


def test_orders_by_default_need_the_accounts_and_act_under_orders_write(monkeypatch):
    monkeypatch.delenv("WOJAK_SIDECAR_ACCOUNTS", raising=False)
    monkeypatch.delenv("WOJAK_SIDECAR_CARRIES", raising=False)
    with pytest.raises(ConfigError, match="WOJAK_SIDECAR_ACCOUNTS is not set"):
        BrokerSidecarSettings().runner_config(8)
    monkeypatch.setenv("WOJAK_SIDECAR_ACCOUNTS", "desk-*")
    config = BrokerSidecarSettings().runner_config(8)
    principal = sidecar_principal("kafka", config)
    assert config.carries == "orders" and principal.may(Scope.ORDERS_WRITE) and not principal.may(Scope.TICKS_WRITE)
    assert principal.permits("desk-1") and not principal.permits("other")


def test_ticks_need_no_account_and_act_under_ticks_write_only(monkeypatch):
    monkeypatch.delenv("WOJAK_SIDECAR_ACCOUNTS", raising=False)
    monkeypatch.setenv("WOJAK_SIDECAR_CARRIES", "ticks")
    config = BrokerSidecarSettings().runner_config(8)
    principal = sidecar_principal("kinesis", config)
    assert config.carries == "ticks" and config.accounts == ()
    assert principal.may(Scope.TICKS_WRITE) and not principal.may(Scope.ORDERS_WRITE)
    assert not principal.permits("desk-1"), "a ticks source trades nothing"


def test_anything_else_is_refused_naming_the_setting(monkeypatch):
    monkeypatch.setenv("WOJAK_SIDECAR_CARRIES", "quotes")
    with pytest.raises(ValidationError, match="WOJAK_SIDECAR_CARRIES"):
        BrokerSidecarSettings()
