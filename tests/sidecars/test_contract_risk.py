"""The contract engine's risk file is the demo file with only the order rates lifted, so the
contract tests delivery under the same rules `wojak dev` runs with."""

from __future__ import annotations

from pathlib import Path

import yaml

from wojak.engine.risk import demo_risk_config_path
from wojak.engine.risk._config import load_risk_config
from wojak.sidecars.testing.contract import CONTRACT_RISK_CONFIG


def test_the_contract_risk_file_is_the_demo_file_with_order_rates_no_sidecar_reaches(tmp_path: Path) -> None:
    demo = yaml.safe_load(Path(demo_risk_config_path()).read_text())
    contract = yaml.safe_load(CONTRACT_RISK_CONFIG)
    rates = {"max_orders_per_second", "max_orders_per_minute"}
    assert {k: v for k, v in contract["limits"].items() if k not in rates} == {
        k: v for k, v in demo["limits"].items() if k not in rates
    }
    assert {k: v for k, v in contract.items() if k != "limits"} == {k: v for k, v in demo.items() if k != "limits"}
    assert contract["limits"]["max_orders_per_second"] >= 100_000
    path = tmp_path / "risk.yaml"
    path.write_text(CONTRACT_RISK_CONFIG)
    assert load_risk_config(path).limits.max_orders_per_second == contract["limits"]["max_orders_per_second"]
