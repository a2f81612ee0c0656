"""The risk configuration file (YAML or JSON): parsed once, then frozen.

A file's top-level ``limits`` must name every limit (``LIMIT_NAMES``): each is a value, or
``{value: null, reason: "..."}`` for an explicit, reasoned "unlimited". A missing limit or a
bare ``null`` is refused with an error naming the limit, so a limit is never off by omission.
Account and instrument ``limits`` stay partial overrides (what they leave out is inherited).
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import json
import logging
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from wojak.errors import ConfigError

log = logging.getLogger(__name__)


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
        raise ValueError('write decimals as quoted strings ("0.05"): floats lose precision')
    return value


class Limits(_Frozen):
    """Unset (None) = not checked. The file's top level must name each one (see ``_parse``);
    instrument and account sections override some of them."""

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
    # tick plausibility: a tick moving the last price more than this percent from the previous
    # accepted one within tick_jump_seconds of it is held as suspect (both set, or neither)
    max_tick_jump_percent: Decimal | None = Field(default=None, gt=0)
    tick_jump_seconds: Decimal | None = Field(default=None, gt=0)

    _floats = field_validator("*", mode="before")(_no_float)


LIMIT_NAMES: tuple[str, ...] = tuple(Limits.model_fields)
_TICK_JUMP = ("max_tick_jump_percent", "tick_jump_seconds")


def _tick_jump_pair(limits: Limits, where: str) -> None:
    percent, seconds = (getattr(limits, name) for name in _TICK_JUMP)
    if (percent is None) != (seconds is None):
        raise ValueError(
            f"{where}max_tick_jump_percent and tick_jump_seconds go together: give both values, or make both unlimited"
        )


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
    home: str | None = None  # the one cluster that writes this account's documents (default: home_cluster)


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
    # Across clouds every account has one home cluster that alone trades it (XDCR replicates one
    # way). Unset everywhere: one cluster, every account home. Set: engines need WOJAK_ENGINE_CLUSTER.
    home_cluster: str | None = None
    limits: Limits = Limits()
    rules: Rules = Rules()
    accounts: dict[str, Account] = {}
    instruments_file: str | None = None  # reference data (YAML/JSON mapping or CSV), relative to this file
    instruments: dict[str, Instrument] = Field(default_factory=dict)
    _unlimited: dict[str, str] = PrivateAttr(default_factory=dict)  # limit -> the file's reason for no limit

    @property
    def unlimited(self) -> dict[str, str]:
        """The top-level limits the file set to ``{value: null, reason: ...}``, with their reasons."""
        return dict(self._unlimited)

    @model_validator(mode="after")
    def _tick_jump_limits_pair_up(self) -> "RiskConfig":
        _tick_jump_pair(self.limits, "limits: ")
        for symbol, ins in self.instruments.items():  # an instrument's override merged over the defaults
            merged = Limits(
                **{
                    n: getattr(ins.limits, n) if getattr(ins.limits, n) is not None else getattr(self.limits, n)
                    for n in _TICK_JUMP
                }
            )
            _tick_jump_pair(merged, f"instruments.{symbol}.limits: ")
        for account, acc in self.accounts.items():
            named = [n for n in _TICK_JUMP if getattr(acc.limits, n) is not None]
            if named:
                raise ValueError(
                    f"accounts.{account}.limits: {', '.join(named)}: ticks are per instrument, "
                    "not per account (set it at the top level or on the instrument)"
                )
        return self

    @field_validator("exchange_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Kolkata)") from None
        return value


class RiskConfigError(ConfigError):
    """The risk configuration is unusable; the message names the file and each bad setting."""


def load_risk_config(path: str | Path) -> RiskConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RiskConfigError(f"cannot read risk config {path} (setting WOJAK_ENGINE_RISK_CONFIG): {exc}") from None
    config = _parse(text, str(path), base=path.parent)
    for name, reason in config.unlimited.items():
        log.warning("risk config %s: no %s limit (reason: %s)", path, name, reason)
    return config


def parse_risk_config(text: str, origin: str) -> RiskConfig:
    """A risk file's text, validated exactly as the engine loads it (``origin`` names it in the
    error). What the RiskPolicy operator checks before it writes a ConfigMap; references to other
    files (``instruments_file``) are refused, since a ConfigMap carries one file."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RiskConfigError(f"{origin} is not valid YAML: {exc}") from None
    if isinstance(data, dict) and "instruments_file" in data:
        raise RiskConfigError(f"{origin}: instruments_file: give the instruments inline (a ConfigMap holds one file)")
    return _parse(text, origin)


def demo_risk_config_path() -> str:
    """The packaged demo risk file (``default_risk.yaml``): what `wojak dev` passes the engine
    as ``WOJAK_ENGINE_RISK_CONFIG``. The engine itself never falls back to it."""
    path = Path(__file__).with_name("default_risk.yaml")
    if not path.is_file():  # pragma: no cover - a zipped install
        raise RiskConfigError(f"the demo risk config is not a file on disk here ({path})")
    return str(path)


def default_risk_config() -> RiskConfig:
    """The demo configuration (``demo_risk_config_path``), parsed."""
    text = resources.files("wojak.engine.risk").joinpath("default_risk.yaml").read_text()
    return _parse(text, "embedded default_risk.yaml")


_NAME_IT = 'name each with a value, or {value: null, reason: "..."} to run without it'


def _top_level_limits(raw: Any) -> tuple[Any, dict[str, str], list[str]]:
    """The file's top-level ``limits``: every limit named. Returns (the limits for the model,
    the reasoned unlimited ones, problems)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return raw, {}, []  # the model names the type error
    values: dict[str, Any] = {k: v for k, v in raw.items() if k not in LIMIT_NAMES}  # unknown: the model refuses them
    unlimited: dict[str, str] = {}
    problems: list[str] = []
    missing, bare = [], []
    for name in LIMIT_NAMES:
        if name not in raw:
            missing.append(name)
            continue
        value = raw[name]
        if value is None:
            bare.append(name)
        elif isinstance(value, dict):
            if "value" not in value or set(value) - {"value", "reason"}:
                problems.append(f'limits.{name}: write a value, or {{value: null, reason: "..."}}')
            elif value["value"] is not None:
                values[name] = value["value"]
            elif not isinstance(value.get("reason"), str) or not value["reason"].strip():
                problems.append(f'limits.{name}: an unlimited limit needs a reason: {{value: null, reason: "..."}}')
            else:
                unlimited[name] = value["reason"].strip()
        else:
            values[name] = value
    if missing:
        problems.insert(0, f"limits: missing {', '.join(missing)}: {_NAME_IT}")
    if bare:
        problems.insert(0, f"limits: {', '.join(bare)}: a bare null is not a limit: {_NAME_IT}")
    return values, unlimited, problems


def _override_problems(data: dict[str, Any]) -> list[str]:
    """Account and instrument limits are plain values (left out = inherited): the
    ``{value: null, reason}`` form belongs to the top level only."""
    problems = []
    for section in ("accounts", "instruments"):
        entries = data.get(section)
        if not isinstance(entries, dict):
            continue
        for key, entry in entries.items():
            limits = entry.get("limits") if isinstance(entry, dict) else None
            if not isinstance(limits, dict):
                continue
            for name, value in limits.items():
                if isinstance(value, dict):
                    problems.append(
                        f"{section}.{key}.limits.{name}: an override is a plain value (leave it out to "
                        "inherit the top-level limit; only the top level can be unlimited)"
                    )
    return problems


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
    data["limits"], unlimited, problems = _top_level_limits(data.get("limits"))
    problems += _override_problems(data)
    config: RiskConfig | None = None
    try:
        config = RiskConfig.model_validate(data)
    except ValidationError as exc:
        problems += [
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}".removeprefix(": ").replace("Value error, ", "")
            for e in exc.errors(include_url=False)
        ]
    if problems or config is None:
        raise RiskConfigError(f"{origin}: {'; '.join(problems)}")
    config._unlimited = unlimited
    return config
