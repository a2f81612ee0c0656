"""SNS as a ``Source``, through SQS: the SQS source (``wojak.sidecars.sqs``: long polls, leases,
settlements, dead letters, FIFO groups) on a queue subscribed to the topic, with each message
unwrapped first.

* The SNS envelope (the default): the SQS body is a ``Notification`` (``Type``, ``MessageId``,
  ``TopicArn``, ``Message``, ``MessageAttributes``); the order is ``Message``, its encoding the
  envelope's ``wojak-body-encoding`` attribute, and its coordinates ``(TopicArn, MessageId)``:
  the SNS message id, the same if SNS delivers it to the queue twice, so a missing
  ``client_order_id`` is derived the same way both times. A body that is not an envelope is
  dead-lettered ``invalid_envelope``, a notification from another topic than
  ``WOJAK_SIDECAR_SNS_TOPIC_ARN`` ``unexpected_topic``.
* Raw message delivery: the SQS body is the order; coordinates ``(topic ARN, SQS MessageId)``
  (SNS's own id is not delivered: a producer that may publish twice sets ``client_order_id``).

A dead letter carries the SQS body as it came (the whole envelope), with the reason.

The queue's policy decides who may deliver to it (SNS, from this topic): messages are not
signature-checked on this path; the push endpoint is.

The push endpoint (``WOJAK_SIDECAR_SNS_MODE=push``, ``SnsPushSource``): the sidecar is the topic's
HTTPS subscription. Every POST is checked before anything else: the body within
``max_body_bytes`` (413), a JSON SNS message (400), from the configured topic (403), signed with
``SignatureVersion`` 1 (SHA1withRSA) or 2 (SHA256withRSA) by a certificate fetched only from
``https://sns.<region>.amazonaws.com/....pem`` (cached by URL) and verifying (403 otherwise, 400
for a missing signature): nothing unsigned or forged reaches the engine. A
``SubscriptionConfirmation`` is confirmed by fetching its ``SubscribeURL`` (https, same hosts);
a ``Notification`` is an order (coordinates ``(TopicArn, MessageId)``, as on the SQS path, so
both paths derive the same ``client_order_id``). The answer waits for the verdict: 200 once
acked, or once the dead letter (the notification as received, with the reason, to the SQS
dead-letter queue) is confirmed; 503 for a ``retry``, a full backlog or a stopping sidecar (SNS
retries by the subscription's delivery policy).

SNS builds on the SQS sidecar on purpose: the one exception to brokers-are-independent
(pyproject.toml).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import logging
import re
import urllib.request
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import orjson

from wojak.errors import WojakError
from wojak.sidecars._core.metrics import SidecarMetrics
from wojak.sidecars._core.serve import serve_sidecar
from wojak.sidecars._core.source import SettleFailed, Source, SourceMessage
from wojak.sidecars.sns.config import SnsSidecarSettings
from wojak.sidecars.sqs import source as sqs

log = logging.getLogger(__name__)

INVALID_ENVELOPE = "invalid_envelope"
UNEXPECTED_TOPIC = "unexpected_topic"
# where SNS's signing certificates and subscription URLs live: https://sns.<region>.amazonaws.com[.cn]/
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
MAX_CERTIFICATE_BYTES = 65536
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def coordinates_for(topic_arn: str, message_id: str) -> tuple[str, str]:
    """Stable across redeliveries: SNS's message id (the SQS one with raw delivery)."""
    return (topic_arn, str(message_id))


class SnsMessage(sqs.SqsMessage):
    def unwrap(self, source: sqs.SqsSource) -> tuple[str, str | None, tuple[str, str], tuple[str, dict[str, Any]] | None]:
        config = source.config
        assert isinstance(config, SnsSidecarSettings)
        if config.raw_delivery:
            text, encoding, _, _ = super().unwrap(source)
            return text, encoding, coordinates_for(config.topic_arn or config.queue, self.message_id), None
        fallback = coordinates_for(config.topic_arn or config.queue, self.message_id)
        try:
            envelope = orjson.loads(self.text)
        except orjson.JSONDecodeError:
            envelope = None
        if (
            not isinstance(envelope, dict)
            or envelope.get("Type") != "Notification"
            or not isinstance(envelope.get("Message"), str)
            or not envelope.get("MessageId")
            or not isinstance(envelope.get("TopicArn"), str)
        ):
            refusal = (
                INVALID_ENVELOPE,
                {"error": "not an SNS Notification envelope (raw message delivery? set WOJAK_SIDECAR_SNS_RAW_DELIVERY=true)"},
            )
            return self.text, None, fallback, refusal
        topic, message_id = envelope["TopicArn"], str(envelope["MessageId"])
        coordinates = coordinates_for(topic, message_id)
        if config.topic_arn and topic != config.topic_arn:
            return (
                envelope["Message"],
                None,
                coordinates,
                (UNEXPECTED_TOPIC, {"topic": topic[:256], "expected": config.topic_arn}),
            )
        attributes = envelope.get("MessageAttributes") or {}
        encoding = attributes.get(sqs.ENCODING_ATTRIBUTE, {}).get("Value") if isinstance(attributes, dict) else None
        return envelope["Message"], encoding, coordinates, None


class SnsSource(sqs.SqsSource):
    name = "sns"  # the CLI name: part of every derived client_order_id, so never renamed later
    message_class = SnsMessage

    def __init__(self, config: SnsSidecarSettings, metrics: SidecarMetrics | None = None, client_factory: Any = None) -> None:
        super().__init__(config, metrics, client_factory)


class Refused(WojakError, ValueError):
    """A push request answered before it reaches the engine: the status and why."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def string_to_sign(message: dict[str, Any]) -> bytes:
    """SNS's canonical form of a message: each signed field present, as ``name\\nvalue\\n``, in order."""
    fields = _SIGNED_FIELDS.get(str(message.get("Type")))
    if fields is None:
        raise Refused(400, f"unknown SNS message type {str(message.get('Type'))[:64]!r}")
    parts = []
    for name in fields:
        if name in message and message[name] is not None:
            parts.append(f"{name}\n{message[name]}\n")
    return "".join(parts).encode()


def sns_url(url: Any, what: str) -> str:
    """``url`` if it is https on SNS's own host (``sns.<region>.amazonaws.com``), else ``Refused(403)``."""
    if not isinstance(url, str):
        raise Refused(400, f"{what} is missing")
    parts = urlsplit(url)
    if parts.scheme != "https" or not SNS_HOST.fullmatch(parts.hostname or "") or parts.port not in (None, 443) or parts.username:
        raise Refused(403, f"{what} is not an https://sns.<region>.amazonaws.com URL")
    return url


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - sns_url() checked it: https on SNS's host
        data: bytes = response.read(MAX_CERTIFICATE_BYTES + 1)
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise ValueError("larger than a certificate")
    return data


class SignatureChecker:
    """SNS message signatures (versions 1 and 2), with certificates fetched only from SNS's hosts and kept by URL."""

    def __init__(self, fetch: Callable[[str], Awaitable[bytes]], cache_size: int = 16) -> None:
        self.fetch = fetch
        self.cache_size = cache_size
        self._keys: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.fetches = 0

    async def _key(self, url: str) -> Any:
        from cryptography import x509

        key = self._keys.get(url)
        if key is not None:
            self._keys.move_to_end(url)
            return key
        self.fetches += 1
        try:
            pem = await self.fetch(url)
            certificate = x509.load_pem_x509_certificate(pem)
        except Exception as exc:  # cannot check it now: SNS retries (a 5xx)
            raise Refused(503, f"the signing certificate could not be had ({str(exc)[:120] or type(exc).__name__})") from None
        key = certificate.public_key()
        self._keys[url] = key
        while len(self._keys) > self.cache_size:
            self._keys.popitem(last=False)
        return key

    async def verify(self, message: dict[str, Any]) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        version = message.get("SignatureVersion")
        signature = message.get("Signature")
        if not signature or version is None:
            raise Refused(400, "unsigned")
        algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(version))
        if algorithm is None:
            raise Refused(400, f"unknown SignatureVersion {str(version)[:8]!r}")
        url = sns_url(message.get("SigningCertURL") or message.get("SigningCertUrl"), "SigningCertURL")
        canonical = string_to_sign(message)
        try:
            raw = base64.b64decode(str(signature), validate=True)
        except (binascii.Error, ValueError):
            raise Refused(403, "the signature is not base64") from None
        key = await self._key(url)
        if not isinstance(key, rsa.RSAPublicKey):
            raise Refused(403, "the signing certificate is not RSA")
        try:
            key.verify(raw, canonical, padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise Refused(403, "the signature does not verify") from None


class SnsPushMessage(SourceMessage):
    """One notification, its HTTP answer waiting for the verdict."""

    def __init__(
        self,
        source: SnsPushSource,
        notification: dict[str, Any],
        raw: bytes,
        body: bytes,
        refusal: tuple[str, dict[str, Any]] | None,
    ) -> None:
        self._source = source
        self.raw = raw
        self.notification = notification
        self.answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        super().__init__(
            body,
            coordinates_for(str(notification["TopicArn"]), str(notification["MessageId"])),
            {"message_id": notification["MessageId"]},
        )
        self.refusal = refusal

    def _answer(self, status: int) -> None:
        if not self.answer.done():
            self.answer.set_result(status)

    async def _ack(self) -> None:
        self._answer(200)

    async def _requeue(self, delay: float) -> None:
        self._answer(503)  # SNS delivers it again by the subscription's delivery policy

    async def _dead_letter(self, reason: str, detail: Any) -> None:
        try:
            await self._source.settle_dead_letter(self, reason, detail)
        except BaseException:
            self._answer(503)
            raise
        self._answer(200)


class SnsPushSource(Source):
    """The sidecar as the topic's HTTPS subscription endpoint (see the module's docstring)."""

    name = "sns"  # as on the SQS path: both derive the same client_order_id for one notification

    def __init__(
        self,
        config: SnsSidecarSettings,
        metrics: SidecarMetrics | None = None,
        *,
        client_factory: Callable[[], Any] | None = None,
        fetch: Callable[[str], Awaitable[bytes]] | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._client_factory = client_factory or self._boto3_client
        self._client: Any = None
        self._fetch_sync = _fetch
        self.checker = SignatureChecker(fetch or self._fetch_in_thread, config.certificate_cache)
        self.confirm = fetch or self._fetch_in_thread  # GET SubscribeURL
        self._queue: asyncio.Queue[SnsPushMessage | None] = asyncio.Queue(config.backlog)
        self._server: Any = None
        self._server_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.refused: collections.Counter[int] = collections.Counter()
        self.port = config.push_port

    def _boto3_client(self) -> Any:
        import boto3

        return boto3.session.Session().client("sqs", endpoint_url=self.config.endpoint or None, region_name=self.config.region)

    async def _fetch_in_thread(self, url: str) -> bytes:
        return await asyncio.to_thread(self._fetch_sync, url)

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> SnsPushSource:
        import uvicorn

        self._client = await asyncio.to_thread(self._client_factory)
        cfg = self.config

        class _Server(uvicorn.Server):
            def install_signal_handlers(self) -> None:  # the sidecar owns the signals
                return None

        self._server = _Server(
            uvicorn.Config(
                self.app,
                host=cfg.push_host,
                port=cfg.push_port,
                ssl_certfile=cfg.tls_cert_file,
                ssl_keyfile=cfg.tls_key_file,
                log_level="warning",
                access_log=False,
                lifespan="off",
                loop="none",
                interface="asgi3",
                proxy_headers=False,
            )
        )
        self._server_task = asyncio.create_task(self._server.serve(), name="wojak-sns-push")
        while not self._server.started:
            if self._server_task.done():
                self._server_task.result()
                raise OSError(f"the SNS push endpoint could not listen on {cfg.push_host}:{cfg.push_port}")
            await asyncio.sleep(0.02)
        sockets = [s for server in getattr(self._server, "servers", []) for s in server.sockets]
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("SNS push endpoint %r listening (port %d)", cfg, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_consuming()
        if self._server is not None and self._server_task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._server_task), 5)
            except (asyncio.TimeoutError, Exception, SystemExit):
                self._server_task.cancel()
            self._server = None

    async def stop_consuming(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        while not self._queue.empty():  # not handed to the engine: SNS delivers them again
            message = self._queue.get_nowait()
            if message is not None:
                message._answer(503)
        self._queue.put_nowait(None)

    def is_ready(self) -> bool:
        return self._server is not None and bool(self._server.started) and not self._stopping

    async def messages(self) -> AsyncIterator[SourceMessage]:
        while (message := await self._queue.get()) is not None:
            yield message

    # -- one request -----------------------------------------------------------------

    async def handle(self, raw: bytes) -> tuple[int, str]:
        """A POSTed SNS message -> (status, text)."""
        try:
            return await self._handle(raw)
        except Refused as refused:
            self.refused[refused.status] += 1
            log.warning("SNS push refused (%d): %s", refused.status, refused)
            return refused.status, str(refused)

    async def _handle(self, raw: bytes) -> tuple[int, str]:
        if len(raw) > self.config.max_body_bytes + 16384:  # the order's cap and room for the envelope
            raise Refused(413, "body too large")
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Refused(400, "not an SNS message (JSON)") from None
        if not isinstance(message, dict) or not isinstance(message.get("Type"), str):
            raise Refused(400, "not an SNS message")
        if message.get("TopicArn") != self.config.topic_arn:
            raise Refused(403, "not from the subscribed topic")
        await self.checker.verify(message)  # nothing unsigned or forged goes further
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            url = sns_url(message.get("SubscribeURL"), "SubscribeURL")
            try:
                await self.confirm(url)
            except Exception as exc:
                raise Refused(503, f"confirming the subscription failed ({str(exc)[:120] or type(exc).__name__})") from None
            log.info("SNS subscription to %s confirmed", self.config.topic_arn)
            return 200, "confirmed"
        if kind == "UnsubscribeConfirmation":
            log.warning("SNS says the subscription to %s was removed", self.config.topic_arn)
            return 200, "noted"
        if not isinstance(message.get("Message"), str) or not message.get("MessageId"):
            raise Refused(400, "a notification without Message or MessageId")
        if self._stopping:
            raise Refused(503, "stopping")
        body, refusal = self._body(message)
        notification = SnsPushMessage(self, message, raw, body, refusal)
        try:
            self._queue.put_nowait(notification)
        except asyncio.QueueFull:
            raise Refused(503, "the backlog is full") from None
        status = await notification.answer
        return status, "ok" if status == 200 else "retry"

    def _body(self, message: dict[str, Any]) -> tuple[bytes, tuple[str, dict[str, Any]] | None]:
        text = message["Message"]
        attributes = message.get("MessageAttributes") or {}
        encoding = attributes.get(sqs.ENCODING_ATTRIBUTE, {}).get("Value") if isinstance(attributes, dict) else None
        body = text.encode("utf-8", "surrogateescape")
        if encoding == "base64":
            try:
                return base64.b64decode(text, validate=True), None
            except (binascii.Error, ValueError):
                return body, (sqs.INVALID_BODY_ENCODING, {"error": "the body is not valid base64"})
        if encoding is not None:
            return body, (sqs.INVALID_BODY_ENCODING, {"error": f"unknown {sqs.ENCODING_ATTRIBUTE} {str(encoding)[:32]!r}"})
        if len(body) > self.config.max_body_bytes:
            return body, (sqs.BODY_TOO_LARGE, {"bytes": len(body), "limit": self.config.max_body_bytes})
        return body, None

    async def settle_dead_letter(self, message: SnsPushMessage, reason: str, detail: Any) -> None:
        """The notification as received, with the reason, to the SQS dead-letter queue; confirmed."""
        text = message.raw.decode("utf-8", "replace")
        attributes = sqs.dead_letter_attributes(
            {}, reason, detail, self.config.queue, str(message.notification["MessageId"]), len(text.encode())
        )
        kwargs: dict[str, Any] = {
            "QueueUrl": self.config.dead_letter_queue_url,
            "MessageBody": text,
            "MessageAttributes": attributes,
        }
        if self.config.dead_letter_queue_url.endswith(".fifo"):
            kwargs["MessageGroupId"] = "wojak-dead-letters"
            kwargs["MessageDeduplicationId"] = str(message.notification["MessageId"])[:128]
        try:
            response = await asyncio.wait_for(asyncio.to_thread(self._client.send_message, **kwargs), self.config.settle_timeout)
        except Exception as exc:
            raise SettleFailed(f"the dead letter was not taken ({str(exc)[:200] or type(exc).__name__})") from None
        if not response.get("MessageId"):
            raise SettleFailed("SQS did not confirm the dead letter")

    # -- ASGI ------------------------------------------------------------------------

    async def app(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != self.config.push_path:
            status, text = 404, "not found"
        elif scope["method"] != "POST":
            status, text = 405, "POST only"
        else:
            chunks, size, too_large = [], 0, False
            while True:
                event = await receive()
                chunk = event.get("body", b"")
                size += len(chunk)
                if size > self.config.max_body_bytes + 16384:
                    too_large = True
                else:
                    chunks.append(chunk)
                if not event.get("more_body"):
                    break
            if too_large:
                status, text = 413, "body too large"
                self.refused[413] += 1
            else:
                status, text = await self.handle(b"".join(chunks))
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": text.encode()})


async def serve(config: SnsSidecarSettings, *, stop: asyncio.Event | None = None) -> None:
    """The SNS sidecar (through SQS, or the push endpoint) until SIGTERM/SIGINT (or ``stop``): consume, drain, exit."""
    metrics = SidecarMetrics(SnsSource.name)
    runner = config.runner
    source: Source = SnsPushSource(config, metrics) if config.mode == "push" else SnsSource(config, metrics)
    await serve_sidecar(source, runner, stop=stop, metrics=metrics)
