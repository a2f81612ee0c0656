"""The escalation webhook never follows a redirect and needs https:// off loopback; an SQS
endpoint likewise (issue 8)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests._processes import free_port
from tests.engine.escalation._receiver import SECRET
from tests.engine.escalation.test_delivery import outbox
from wojak.engine.escalation import EscalationDelivery, SinkError, SqsSink, WebhookSink, open_sink
from wojak.engine.protocol import InsecureTransportError


class Recorder:
    """A local HTTP server recording every request (method, path, headers); answers ``status``
    (with a ``Location`` when it is a redirect)."""

    def __init__(self, status: int, location: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/escalations"
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                recorder.requests.append((self.command, self.path, dict(self.headers)))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_failed_delivery_and_nothing_goes_elsewhere(tmp_path, status):
    elsewhere = Recorder(200)
    redirecting = Recorder(status, location=elsewhere.url)
    store = await outbox(tmp_path, 2)
    try:
        delivery = EscalationDelivery(store, WebhookSink(redirecting.url, SECRET.encode(), timeout=2))
        with pytest.raises(SinkError, match=f"answered {status} \\(a redirect: not followed"):
            await delivery.run_once()
        assert len(await store.undelivered_escalations()) == 2, "nothing marked delivered"
    finally:
        redirecting.stop()
        elsewhere.stop()
        await store.close()
    assert [(m, p) for m, p, _ in redirecting.requests] == [("POST", "/escalations")]
    assert "X-Wojak-Signature" in redirecting.requests[0][2]
    assert elsewhere.requests == [], "the signed request and its headers went nowhere else"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:1/x", "http://127.9.9.9:1/x", "http://localhost:1/x", "http://[::1]:1/x", "https://risk.example.com/x"],
)
def test_https_or_loopback_webhooks_are_accepted(url):
    assert isinstance(open_sink(url, {"WOJAK_ESCALATION_WEBHOOK_SECRET": "s"}), WebhookSink)


@pytest.mark.parametrize("url", ["http://risk.example.com/x", "http://10.0.0.5/x", "http://128.0.0.1/x",
                                 "http://localhost.example.com/x", "http://user:pw@risk.example.com/x"])
def test_plain_http_webhooks_off_loopback_are_refused(url):
    with pytest.raises(InsecureTransportError, match="WOJAK_ENGINE_ESCALATION_SINK: http:// .* use https://") as err:
        open_sink(url, {"WOJAK_ESCALATION_WEBHOOK_SECRET": "s"})
    assert "WOJAK_ALLOW_INSECURE_TRANSPORT=1" in str(err.value) and "pw" not in str(err.value)
    with pytest.raises(InsecureTransportError):
        WebhookSink(url, b"s")
    allowed = {"WOJAK_ESCALATION_WEBHOOK_SECRET": "s", "WOJAK_ALLOW_INSECURE_TRANSPORT": "1"}
    assert isinstance(open_sink(url, allowed), WebhookSink)


def test_sqs_endpoints_need_tls_off_loopback():
    pytest.importorskip("boto3")
    assert isinstance(open_sink("sqs://q?endpoint=http://127.0.0.1:5000&region=us-east-1", {}), SqsSink)
    assert isinstance(open_sink("sqs://q?endpoint=https://sqs.example.com&region=us-east-1", {}), SqsSink)
    with pytest.raises(InsecureTransportError, match="WOJAK_ENGINE_ESCALATION_SINK endpoint"):
        open_sink("sqs://q?endpoint=http://sqs.example.com&region=us-east-1", {})
    with pytest.raises(InsecureTransportError, match="queue URL"):
        SqsSink("http://sqs.example.com/123/q", None, "us-east-1")
