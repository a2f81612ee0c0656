"""A tiny webhook receiver on 127.0.0.1 for tests: verifies signatures, dedups by key."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from wojak.engine.escalation import verify

SECRET = "test-webhook-secret"


class Receiver:
    def __init__(self, port: int, hold_first: bool = False) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/escalations"
        self.bodies: list[dict] = []  # every acknowledged delivery (duplicates included)
        self.keys: dict[str, dict] = {}  # deduplicated by Idempotency-Key
        self.bad_signatures = 0
        self.got_first = threading.Event()
        self.release = threading.Event()
        self.hold_first = hold_first
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if not verify(SECRET.encode(), self.headers, body):
                    with receiver._lock:
                        receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                if receiver.hold_first and not receiver.got_first.is_set():
                    receiver.got_first.set()
                    receiver.release.wait(30)  # the engine is killed meanwhile: never acknowledged
                    self.send_response(503)
                    self.end_headers()
                    return
                key = self.headers["Idempotency-Key"]
                doc = json.loads(body)
                assert doc["key"] == key
                with receiver._lock:
                    receiver.bodies.append(doc)
                    receiver.keys.setdefault(key, doc)
                self.send_response(204)
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
