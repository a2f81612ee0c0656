"""A tiny stand-in for the Lambda invoke API (POST /2015-03-31/functions/NAME/invocations)
that runs the real sandbox (with a ledger) in a thread, with knobs for the failure modes:
a delay *after* executing (so a client times out after the venue acted), function errors,
HTTP errors, and a gate that holds invocations to observe how many run at once."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from wojak.engine.venue.sandbox import Sandbox, SandboxConfig


class FakeLambda:
    def __init__(self, ledger: Path, **config: Any) -> None:
        self.sandbox = Sandbox(SandboxConfig(ledger=str(ledger), **config))
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (function name, event)
        self.delay_after_execute = 0.0  # seconds to sleep after executing, before answering
        self.delays_left = 10**9  # how many answers get the delay
        self.function_error: str | None = None
        self.http_status: int | None = None
        self.hold = 0.0  # hold every invocation this long (to observe concurrency)
        self.gate = 0  # hold each invocation until this many are in flight (at most 3 s)
        self.changed = threading.Condition(self.lock)
        self.inflight = 0
        self.max_inflight = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client that timed out: broken pipe
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeLambda":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def submissions(self) -> dict[str, int]:
        with self.lock:
            return self.sandbox.submissions()

    def actions(self) -> list[str]:
        return [event.get("action", "execute") for _, event in self.requests]

    def _answer(self, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes, float]:
        with self.lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            self.changed.notify_all()
            if self.gate:
                self.changed.wait_for(lambda: self.inflight >= self.gate, timeout=3.0)
        try:
            if self.hold:
                time.sleep(self.hold)
            if self.http_status is not None:
                return self.http_status, {"x-amzn-ErrorType": "ServiceException"}, b'{"Message":"boom"}', 0.0
            if self.function_error is not None:
                body = json.dumps({"errorType": "Exception", "errorMessage": "handler failed"}).encode()
                return 200, {"X-Amz-Function-Error": self.function_error}, body, 0.0
            with self.lock:
                answer = self.sandbox.handle(event)
                delay = 0.0
                if event.get("action", "execute") == "execute" and self.delays_left > 0 and self.delay_after_execute:
                    self.delays_left -= 1
                    delay = self.delay_after_execute
            return 200, {}, json.dumps(answer).encode(), delay
        finally:
            with self.lock:
                self.inflight -= 1
                self.changed.notify_all()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                parts = self.path.split("?")[0].strip("/").split("/")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if len(parts) != 4 or parts[:2] != ["2015-03-31", "functions"] or parts[3] != "invocations":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                event = json.loads(body or b"{}")
                with fake.lock:
                    fake.requests.append((parts[2], event))
                status, headers, payload, delay = fake._answer(event)
                if delay:
                    time.sleep(delay)  # executed already; the answer is late
                self.send_response(status)
                headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST", **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
