"""A constant-rate HTTP load generator: `connections` keep-alive connections, each sending on a
fixed schedule (rate / connections per second), so the offered load does not drop when the
server slows down (wrk's delay() pacing waits for each response first)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from urllib.parse import urlparse

from bench._common import percentile


def paced(url: str, key: str, rate: float, seconds: float, connections: int = 10, prefix: str = "paced") -> dict:
    target = urlparse(url)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    per_connection = int(rate * seconds / connections)
    interval = connections / rate
    start = time.perf_counter() + 0.2

    def worker(w: int) -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        due = start + w * interval / connections  # stagger the connections
        mine: list[float] = []
        for i in range(per_connection):
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            body = json.dumps({"client_order_id": f"{prefix}-{w}-{i}", "account": f"acct-{i % 100}",
                               "symbol": "NIFTY-FUT", "side": "buy" if i % 2 else "sell", "quantity": "1",
                               "order_type": "limit", "limit_price": "24000"})  # fmt: skip
            sent = time.perf_counter()
            conn.request("POST", target.path, body, headers)
            response = conn.getresponse()
            response.read()
            # latency from when the request was due: a late send counts against the server
            mine.append(time.perf_counter() - min(sent, max(due, start)))
            if response.status != 200:
                with lock:
                    errors[0] += 1
            due += interval
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "per_s": len(latencies) / elapsed,
        "p50_us": percentile(latencies, 50) * 1e6,
        "p90_us": percentile(latencies, 90) * 1e6,
        "p99_us": percentile(latencies, 99) * 1e6,
        "status_errors": errors[0],
    }
