"""Fixed-parameter pre-trade risk checks. A denial is a decision (an event), not an exception."""

from wojak.engine.risk._checks import AccountView, Breach, Decision, RiskEngine, Rule, daily_loss, gross_exposure
from wojak.engine.risk._config import (
    Action,
    Instrument,
    RiskConfig,
    RiskConfigError,
    TradingState,
    default_risk_config,
    demo_risk_config_path,
    load_risk_config,
    parse_risk_config,
)
from wojak.engine.risk._reload import RiskConfigWatcher, file_sha256

__all__ = [
    "AccountView",
    "Action",
    "Breach",
    "Decision",
    "Instrument",
    "RiskConfig",
    "RiskConfigError",
    "RiskConfigWatcher",
    "RiskEngine",
    "Rule",
    "TradingState",
    "daily_loss",
    "default_risk_config",
    "demo_risk_config_path",
    "file_sha256",
    "gross_exposure",
    "load_risk_config",
    "parse_risk_config",
]
