"""The risk configuration file (YAML or JSON): parsed once, then frozen."""

from __future__ import annotations

import enum
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class TradingState(str, enum.Enum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # only orders that shrink a position
    HALTED = "HALTED"  # nothing new


class Action(str, enum.Enum):
    DENY = "deny"
    ESCALATE = "escalate"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError("write decimals as quoted strings (\"0.05\"): floats lose precision")
    return value


class Limits(_Frozen):
    max_order_quantity: Decimal | None = Field(default=None, gt=0)
    max_order_notional: Decimal | None = Field(default=None, gt=0)
    max_position: Decimal | None = Field(default=None, gt=0)
    price_band_percent: Decimal | None = Field(default=None, gt=0)

    _floats = field_validator("*", mode="before")(_no_float)


class Instrument(_Frozen):
    multiplier: Decimal = Field(default=Decimal(1), gt=0)
    price_decimals: int = Field(default=2, ge=0, le=8)
    quantity_decimals: int = Field(default=0, ge=0, le=8)
    limits: Limits = Limits()

    _floats = field_validator("multiplier", mode="before")(_no_float)


class Account(_Frozen):
    trading_state: TradingState = TradingState.ACTIVE


class Rules(_Frozen):
    trading_state: Action = Action.DENY
    allowed_instruments: Action = Action.DENY
    max_order_quantity: Action = Action.DENY
    max_order_notional: Action = Action.ESCALATE
    max_position: Action = Action.ESCALATE
    price_band: Action = Action.DENY


class RiskConfig(_Frozen):
    trading_state: TradingState = TradingState.ACTIVE
    limits: Limits = Limits()
    rules: Rules = Rules()
    accounts: dict[str, Account] = {}
    instruments: dict[str, Instrument] = Field(default_factory=dict)


class RiskConfigError(ValueError):
    """The risk configuration is unusable; the message names the file and each bad setting."""


def load_risk_config(path: str | Path) -> RiskConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RiskConfigError(f"cannot read risk config {path} (setting WOJAK_ENGINE_RISK_CONFIG): {exc}") from None
    return _parse(text, str(path))


def default_risk_config() -> RiskConfig:
    """The embedded demo configuration `wojak dev` runs with."""
    text = resources.files("wojak.engine.risk").joinpath("default_risk.yaml").read_text()
    return _parse(text, "embedded default_risk.yaml")


def _parse(text: str, origin: str) -> RiskConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RiskConfigError(f"{origin} is not valid YAML: {exc}") from None
    try:
        return RiskConfig.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise RiskConfigError(f"{origin}: {problems}") from None
