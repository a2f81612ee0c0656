"""The risk configuration file (YAML or JSON): parsed once, then frozen."""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import json
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class TradingState(str, enum.Enum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # only orders that shrink a position
    HALTED = "HALTED"  # nothing new


class Action(str, enum.Enum):
    DENY = "deny"
    ESCALATE = "escalate"
    SHADOW_DENY = "shadow_deny"  # evaluated and logged as "would deny", not enforced
    SHADOW_ESCALATE = "shadow_escalate"  # evaluated and logged as "would escalate", not enforced


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError("write decimals as quoted strings (\"0.05\"): floats lose precision")
    return value


class Limits(_Frozen):
    """Every limit is optional (unset = not checked); instrument and account sections override."""

    max_order_quantity: Decimal | None = Field(default=None, gt=0)
    max_order_notional: Decimal | None = Field(default=None, gt=0)
    max_position: Decimal | None = Field(default=None, gt=0)
    price_band_percent: Decimal | None = Field(default=None, gt=0)
    max_gross_exposure: Decimal | None = Field(default=None, gt=0)  # per account
    max_daily_loss: Decimal | None = Field(default=None, gt=0)  # per account, realised + marked to last tick
    max_orders_per_second: int | None = Field(default=None, gt=0)  # per account, counted in the store
    max_orders_per_minute: int | None = Field(default=None, gt=0)
    stale_tick_seconds: Decimal | None = Field(default=None, gt=0)  # market orders need a tick this fresh
    min_days_to_expiry: int | None = Field(default=None, ge=0)
    max_days_to_expiry: int | None = Field(default=None, ge=0)

    _floats = field_validator("*", mode="before")(_no_float)


class Instrument(_Frozen):
    """Reference data: expiry, lot size, tick size, price precision, multiplier (and limits)."""

    expiry: dt.date | None = None
    lot_size: Decimal = Field(default=Decimal(1), gt=0)
    tick_size: Decimal | None = Field(default=None, gt=0)  # unset: 10**-price_decimals
    multiplier: Decimal = Field(default=Decimal(1), gt=0)
    price_decimals: int = Field(default=2, ge=0, le=8)
    quantity_decimals: int = Field(default=0, ge=0, le=8)
    currency_decimals: int = Field(default=2, ge=0, le=8)  # realised P&L is rounded to this many places
    limits: Limits = Limits()

    _floats = field_validator("multiplier", "lot_size", "tick_size", mode="before")(_no_float)

    @model_validator(mode="after")
    def _tick_fits_precision(self) -> "Instrument":
        if self.tick_size is not None and -self.tick_size.as_tuple().exponent > self.price_decimals:  # type: ignore[operator]
            raise ValueError(f"tick_size {self.tick_size} is finer than price_decimals {self.price_decimals}")
        if -self.lot_size.as_tuple().exponent > self.quantity_decimals:  # type: ignore[operator]
            raise ValueError(f"lot_size {self.lot_size} is finer than quantity_decimals {self.quantity_decimals}")
        return self


class Account(_Frozen):
    trading_state: TradingState = TradingState.ACTIVE
    limits: Limits = Limits()  # account-level overrides (exposure, daily loss, order rate, ...)


class Rules(_Frozen):
    trading_state: Action = Action.DENY
    allowed_instruments: Action = Action.DENY
    max_order_quantity: Action = Action.DENY
    max_order_notional: Action = Action.ESCALATE
    max_position: Action = Action.ESCALATE
    price_band: Action = Action.DENY
    max_gross_exposure: Action = Action.ESCALATE
    max_daily_loss: Action = Action.DENY
    order_rate: Action = Action.DENY
    stale_tick: Action = Action.DENY
    expiry_window: Action = Action.DENY


class RiskConfig(_Frozen):
    trading_state: TradingState = TradingState.ACTIVE
    exchange_timezone: str = "UTC"  # daily counters roll over at midnight here (IANA name)
    halt_on_daily_loss: bool = True  # a daily-loss breach stores the account as HALTED until reset
    limits: Limits = Limits()
    rules: Rules = Rules()
    accounts: dict[str, Account] = {}
    instruments_file: str | None = None  # reference data (YAML/JSON mapping or CSV), relative to this file
    instruments: dict[str, Instrument] = Field(default_factory=dict)

    @field_validator("exchange_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Kolkata)") from None
        return value


class RiskConfigError(ValueError):
    """The risk configuration is unusable; the message names the file and each bad setting."""


def load_risk_config(path: str | Path) -> RiskConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RiskConfigError(f"cannot read risk config {path} (setting WOJAK_ENGINE_RISK_CONFIG): {exc}") from None
    return _parse(text, str(path), base=path.parent)


def default_risk_config() -> RiskConfig:
    """The embedded demo configuration `wojak dev` runs with."""
    text = resources.files("wojak.engine.risk").joinpath("default_risk.yaml").read_text()
    return _parse(text, "embedded default_risk.yaml")


def _reference_data(path: Path, origin: str) -> dict[str, Any]:
    """Instrument reference data: a YAML/JSON mapping symbol -> fields, or a CSV with a
    ``symbol`` column and any of expiry, lot_size, tick_size, price_decimals,
    quantity_decimals, multiplier (empty cells are left unset)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RiskConfigError(f"{origin}: instruments_file: cannot read {path}: {exc}") from None
    if path.suffix.lower() == ".csv":
        out: dict[str, Any] = {}
        for n, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            symbol = (row.pop("symbol", "") or "").strip()
            if not symbol:
                raise RiskConfigError(f"{origin}: instruments_file {path} line {n}: no symbol")
            out[symbol] = {k.strip(): v.strip() for k, v in row.items() if k and v is not None and v.strip()}
        return out
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise RiskConfigError(f"{origin}: instruments_file {path} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise RiskConfigError(f"{origin}: instruments_file {path} must map symbol -> reference data")
    return data


def _parse(text: str, origin: str, base: Path | None = None) -> RiskConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RiskConfigError(f"{origin} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise RiskConfigError(f"{origin}: the risk config must be a mapping")
    data = dict(data or {})
    ref = data.get("instruments_file")
    if isinstance(ref, str):
        ref_path = Path(ref) if Path(ref).is_absolute() or base is None else base / ref
        loaded = _reference_data(ref_path, origin)
        inline = data.get("instruments") or {}
        if isinstance(inline, dict):  # the config's own entries override the file's, field by field
            loaded = {s: {**(loaded.get(s) or {}), **(inline.get(s) or {})} for s in {*loaded, *inline}}
        data["instruments"] = loaded
    try:
        return RiskConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise RiskConfigError(f"{origin}: {problems}") from None
