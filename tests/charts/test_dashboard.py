"""The chart's Grafana dashboard queries only metrics the code really exports: every metric name
in a panel (and in its variables) is served by /metrics of a running engine and sidecar."""

from __future__ import annotations

import json
import re
import urllib.request

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests._kube import CHART
from tests._processes import API_KEY

DASHBOARD = CHART / "dashboards" / "wojak.json"
SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                   "gauge": ("",), "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}  # fmt: skip


def queried_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return {name for expr in exprs for name in re.findall(r"\b(wojak_[a-z0-9_]+)\b", expr)}


def exported_metrics(text: str) -> set[str]:
    """Every series name /metrics serves: each family's samples, and the names its type gives it
    (a labelled family has no sample before its first observation, yet is exported)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))}
    return names


def test_every_metric_a_panel_queries_is_exported_by_the_running_engine_and_sidecar(http_sidecar):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    tick = {"symbol": "NIFTY-FUT", "bid": "24000", "ask": "24001", "last": "24000.5"}
    order = {"client_order_id": "dash-1", "account": "desk-1", "symbol": "NIFTY-FUT", "side": "buy", "quantity": "50",
             "order_type": "limit", "limit_price": "24001"}  # fmt: skip
    with httpx.Client(base_url=http_sidecar.url, headers=headers, timeout=10) as client:
        assert client.post("/v1/ticks", json=tick).status_code in (200, 202)
        reply = client.post("/v1/orders", json=order)
        assert reply.status_code == 200 and reply.json()["verdict"] == "filled", reply.text
    with urllib.request.urlopen(http_sidecar.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    assert "wojak_engine_" in text and "wojak_sidecar_" in text  # both processes' metrics, through the sidecar
    exported = exported_metrics(text)
    queried = queried_metrics()
    assert len(queried) >= 10, queried
    assert queried - exported == set(), f"the dashboard queries metrics nothing exports: {sorted(queried - exported)}"
    # and the ones with traffic carry it
    assert "wojak_engine_replies_total" in {s.name for f in text_string_to_metric_families(text) for s in f.samples}
