"""Fixed-parameter pre-trade risk checks. A denial is a decision (an event), not an exception."""

from wojak.engine.risk._checks import Breach, Decision, RiskEngine, Rule
from wojak.engine.risk._config import (
    Action,
    Instrument,
    RiskConfig,
    RiskConfigError,
    TradingState,
    default_risk_config,
    load_risk_config,
)

__all__ = [
    "Action",
    "Breach",
    "Decision",
    "Instrument",
    "RiskConfig",
    "RiskConfigError",
    "RiskEngine",
    "Rule",
    "TradingState",
    "default_risk_config",
    "load_risk_config",
]
