"""Escalation sinks: an HMAC-signed HTTP webhook and an SQS queue (boto3, imported lazily).

Webhook: ``POST`` the JSON body with headers

- ``X-Wojak-Timestamp``: unix seconds when it was signed,
- ``X-Wojak-Signature``: ``v1=`` + hex HMAC-SHA256(secret, ``timestamp + "." + body``),
- ``Idempotency-Key``: the outbox key (``esc:<client_order_id>``), the same on every retry.

The receiver recomputes the signature and rejects a timestamp older than its tolerance
(replays). The secret comes from an environment variable, never from the config file.
Any 2xx is an acknowledgement; anything else (or no answer) is retried later. A redirect
is never followed: it is a failed delivery (nothing is marked delivered and the signed
request goes nowhere else). The URL must be ``https://`` unless its host is loopback (or
``WOJAK_ALLOW_INSECURE_TRANSPORT=1``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import urllib.error
import urllib.request
from typing import Any, Mapping, Protocol
from urllib.parse import parse_qs, urlparse

from wojak.engine.escalation._sqs import SinkError, SqsSink
from wojak.engine.escalation._sqs import body as _body
from wojak.engine.protocol import InsecureTransportError, require_secure
from wojak.errors import ConfigError

TIMESTAMP_HEADER = "X-Wojak-Timestamp"
SIGNATURE_HEADER = "X-Wojak-Signature"
KEY_HEADER = "Idempotency-Key"
SECRET_ENV = "WOJAK_ESCALATION_WEBHOOK_SECRET"


class EscalationSink(Protocol):
    async def deliver(self, key: str, payload: dict[str, Any]) -> None:
        """Return only once the sink acknowledged; raise ``SinkError`` otherwise."""
        ...

    async def close(self) -> None: ...


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, headers: Mapping[str, str], body: bytes, tolerance: float = 300.0, now: float | None = None) -> bool:
    """The receiver's check: a valid signature over ``timestamp.body`` and a fresh timestamp."""
    timestamp = headers.get(TIMESTAMP_HEADER) or ""
    signature = headers.get(SIGNATURE_HEADER) or ""
    try:
        age = (time.time() if now is None else now) - float(timestamp)
    except ValueError:
        return False
    if abs(age) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is answered as it is (an ``HTTPError``), never followed: the signed body and its
    headers go only to the configured URL."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)
SETTING = "WOJAK_ENGINE_ESCALATION_SINK"


class WebhookSink:
    def __init__(self, url: str, secret: bytes, timeout: float = 5.0, env: Mapping[str, str] | None = None) -> None:
        require_secure(url, SETTING, env)  # https://, or loopback
        if not secret:
            raise ConfigError(f"the escalation webhook needs a signing secret in {SECRET_ENV}")
        self.url, self._secret, self.timeout = url, secret, timeout

    def __repr__(self) -> str:
        return f"WebhookSink({self.url!r})"

    def _post(self, key: str, payload: dict[str, Any]) -> None:
        body = _body(key, payload)
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
                KEY_HEADER: key,
            },
        )
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                if not 200 <= response.status < 300:
                    raise SinkError(f"webhook {self.url} answered {response.status}")
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                raise SinkError(f"webhook {self.url} answered {exc.code} (a redirect: not followed, not delivered)") from None
            raise SinkError(f"webhook {self.url} answered {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise SinkError(f"webhook {self.url} unreachable: {exc}") from None

    async def deliver(self, key: str, payload: dict[str, Any]) -> None:
        await asyncio.to_thread(self._post, key, payload)

    async def close(self) -> None:
        return None


def open_sink(url: str, env: Mapping[str, str]) -> EscalationSink:
    """``http(s)://HOST/PATH`` (a webhook; secret in ``WOJAK_ESCALATION_WEBHOOK_SECRET``) or
    ``sqs://QUEUE_NAME_OR_URL?endpoint=URL&region=R``."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        try:
            return WebhookSink(url, env.get(SECRET_ENV, "").encode(), env=env)
        except InsecureTransportError:
            raise
        except ValueError as exc:
            raise ConfigError(f"WOJAK_ENGINE_ESCALATION_SINK={url!r}: {exc}") from None
    if parsed.scheme == "sqs":
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        queue = parsed.netloc + parsed.path
        if not queue:
            raise ConfigError(f"WOJAK_ENGINE_ESCALATION_SINK={url!r}: write sqs://QUEUE?endpoint=URL&region=R")
        try:
            return SqsSink(queue, options.get("endpoint"), options.get("region") or env.get("AWS_DEFAULT_REGION"), env=env)
        except InsecureTransportError:
            raise
        except ImportError as exc:
            raise ConfigError(f"WOJAK_ENGINE_ESCALATION_SINK={url!r}: {exc}") from None
    raise ConfigError(f"WOJAK_ENGINE_ESCALATION_SINK={url!r}: use http(s)://... (webhook) or sqs://QUEUE")
