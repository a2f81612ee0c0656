"""The SNS push endpoint (``WOJAK_SIDECAR_SNS_MODE=push``): the sidecar as the topic's HTTPS
subscription, with a signing certificate and key the tests make (served, as SNS's are, from an
``https://sns.<region>.amazonaws.com/...pem`` URL: the fetch is faked, the URL rules are not).
Signatures v1 and v2 verify; unsigned, forged or foreign-certificate messages get a 4xx and
never reach the engine; the answer waits for the verdict (200 after the ack or the confirmed
dead letter, 503 for a retry); a subscription is confirmed. Dead letters go to an in-memory SQS."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import uuid

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.sidecars.sqs._memory import MemorySqs, MemorySqsClient
from wojak.engine.protocol import MessageType, derive_client_order_id
from wojak.sidecars.sns.config import SnsSidecarSettings
from wojak.sidecars.sns.source import SnsPushSource
from wojak.sidecars.sqs.source import DETAIL_ATTRIBUTE, REASON_ATTRIBUTE
from wojak.sidecars.testing.contract import TICK, Sidecar, dumps, ledger, order, stored_orders

TOPIC = "arn:aws:sns:us-east-1:123456789012:wojak-orders"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
SUBSCRIBE_URL = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=t"


def make_key_and_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


KEY, PEM = make_key_and_certificate()
OTHER_KEY, _ = make_key_and_certificate()


def canonical(message: dict) -> bytes:
    """SNS's string to sign, written out here independently of the sidecar's."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId"] + (["Subject"] if "Subject" in message else []) + ["Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{n}\n{message[n]}\n" for n in names).encode()


def signed(message: dict, *, version: str = "2", key=KEY, cert_url: str = CERT_URL) -> dict:
    message = {**message, "SignatureVersion": version, "SigningCertURL": cert_url}
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    message["Signature"] = base64.b64encode(key.sign(canonical(message), padding.PKCS1v15(), digest)).decode()
    return message


def notification(body: bytes, *, message_id: str | None = None, topic: str = TOPIC, **kw) -> dict:
    message = {"Type": "Notification", "MessageId": message_id or str(uuid.uuid4()), "TopicArn": topic,
               "Message": body.decode(), "Timestamp": "2026-11-30T12:00:00.000Z", "Subject": "order"}
    return signed(message, **kw)


class Fetcher:
    def __init__(self) -> None:
        self.urls: list[str] = []

    async def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        if url == CERT_URL:
            return PEM
        if url.startswith("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"):
            return b"<ConfirmSubscriptionResponse/>"
        raise OSError(f"no such URL {url}")


@pytest.fixture
def engine(engine_factory):
    proc = engine_factory(WOJAK_SANDBOX_FILL_PROBABILITY="1")
    assert proc.request(MessageType.TICK, {"tick": TICK})["verdict"] == "ok"
    return proc


@pytest.fixture
def push():
    sqs = MemorySqs()
    dlq = sqs.create_queue(f"dlq-{uuid.uuid4().hex[:8]}")
    fetcher = Fetcher()
    config = SnsSidecarSettings(mode="push", topic_arn=TOPIC, dead_letter_queue_url=dlq, region="us-east-1", push_port=0)
    config.check_push()
    source = SnsPushSource(config, client_factory=lambda: MemorySqsClient(sqs), fetch=fetcher)
    return source, fetcher, MemorySqsClient(sqs), dlq


async def post(source: SnsPushSource, message: dict | bytes) -> httpx.Response:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"http://127.0.0.1:{source.port}/sns", content=body,
                                 headers={"content-type": "text/plain; charset=UTF-8"})


async def test_signed_v1_and_v2_notifications_execute_once_the_answer_after_the_verdict(engine, push):
    source, fetcher, _, _ = push
    first = notification(dumps(order("push-1")), version="1")
    async with Sidecar(source, engine) as sc:
        assert (await post(source, first)).status_code == 200
        assert ledger(engine) == {"push-1": 1}, "200 only after the engine's verdict"
        assert (await post(source, notification(dumps(order("push-2")), version="2"))).status_code == 200
        again = await post(source, notification(dumps(order("push-1")), message_id=first["MessageId"]))
        assert again.status_code == 200
        derived = notification(dumps(order()))
        assert (await post(source, derived)).status_code == 200
    assert sc.verdicts("filled") == 3 and sc.verdicts("duplicate") == 1
    assert ledger(engine) == {"push-1": 1, "push-2": 1, derive_client_order_id("sns", TOPIC, derived["MessageId"]): 1}
    assert fetcher.urls == [CERT_URL], "the certificate is fetched once and kept"


async def test_unsigned_forged_and_foreign_messages_are_refused_before_the_engine(engine, push):
    source, fetcher, _, _ = push
    good = notification(dumps(order("forged-1")))
    unsigned = {k: v for k, v in good.items() if k != "Signature"}
    tampered = {**good, "Message": dumps(order("forged-1", quantity="900")).decode()}
    cases = {
        "unsigned": (unsigned, 400),
        "tampered": (tampered, 403),
        "signed by another key": (notification(dumps(order("forged-2")), key=OTHER_KEY), 403),
        "certificate elsewhere": (notification(dumps(order("forged-3")), cert_url="https://evil.example.com/sns.pem"), 403),
        "look-alike host": (notification(dumps(order("forged-4")), cert_url="https://sns.us-east-1.amazonaws.com.evil.example/c.pem"), 403),
        "plain http": (notification(dumps(order("forged-5")), cert_url=CERT_URL.replace("https", "http")), 403),
        "another topic": (notification(dumps(order("forged-6")), topic=TOPIC + "-other"), 403),
        "unknown version": ({**good, "SignatureVersion": "3"}, 400),
        "not json": (b"{nope", 400),
    }
    async with Sidecar(source, engine) as sc:
        for what, (message, status) in cases.items():
            got = await post(source, message)
            assert got.status_code == status, (what, got.status_code, got.text)
    assert sc.source.seen == [], "nothing refused reached the runner"
    assert ledger(engine) == {} and stored_orders(engine) == set(), "nor the engine"
    assert set(fetcher.urls) <= {CERT_URL}, "certificates only from SNS's host"


async def test_poison_is_dead_lettered_with_its_reason_then_answered_200(engine, push):
    source, _, client, dlq = push
    bad = notification(dumps(order("bad-1", quantity="0")))
    async with Sidecar(source, engine):
        assert (await post(source, bad)).status_code == 200
    [letter] = client.receive_message(dlq, 10, 0, 30)["Messages"]
    assert letter["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] == "invalid"
    assert json.loads(letter["MessageAttributes"][DETAIL_ATTRIBUTE]["StringValue"])["errors"][0]["field"] == "quantity"
    assert json.loads(letter["Body"]) == bad, "the notification as it came"
    assert ledger(engine) == {}


async def test_a_retry_is_a_5xx_so_sns_delivers_it_again(engine, push):
    source, _, _, _ = push
    engine.kill()
    message = notification(dumps(order("late-1")))
    async with Sidecar(source, engine, engine_deadline=0.3) as sc:
        assert (await post(source, message)).status_code == 503
        assert sc.verdicts("retry") == 1
        await asyncio.to_thread(engine.start)
        for _ in range(50):  # SNS delivers it again (its delivery policy) until it is answered 2xx
            if (await post(source, message)).status_code == 200:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("never answered 200 once the engine was back")
    assert ledger(engine) == {"late-1": 1}


async def test_a_subscription_is_confirmed_only_through_sns(engine, push):
    source, fetcher, _, _ = push
    confirmation = {"Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "TopicArn": TOPIC, "Token": "t",
                    "Message": "You have chosen to subscribe", "SubscribeURL": SUBSCRIBE_URL,
                    "Timestamp": "2026-11-30T12:00:00.000Z"}
    async with Sidecar(source, engine):
        assert (await post(source, signed(confirmation))).status_code == 200
        elsewhere = signed({**confirmation, "SubscribeURL": "https://evil.example.com/?Action=ConfirmSubscription"})
        assert (await post(source, elsewhere)).status_code == 403
    assert fetcher.urls.count(SUBSCRIBE_URL) == 1 and not any("evil" in u for u in fetcher.urls)


def test_push_settings(monkeypatch):
    from wojak.errors import ConfigError
    from wojak.sidecars.sns import SnsSidecarSettings

    dlq = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-dlq"
    for k, v in {"WOJAK_SIDECAR_ACCOUNTS": "desk-*", "WOJAK_SIDECAR_SNS_MODE": "push", "WOJAK_SIDECAR_SNS_TOPIC_ARN": TOPIC,
                 "WOJAK_SIDECAR_SNS_DEAD_LETTER_QUEUE_URL": dlq}.items():
        monkeypatch.setenv(k, v)
    config = SnsSidecarSettings().to_config()
    assert config.mode == "push" and config.push_host == "127.0.0.1" and config.push_path == "/sns"
    monkeypatch.setenv("WOJAK_SIDECAR_SNS_PUSH_HOST", "0.0.0.0")
    with pytest.raises(ConfigError, match="needs TLS"):
        SnsSidecarSettings().to_config()
    monkeypatch.setenv("WOJAK_SIDECAR_SNS_TLS_CERT_FILE", "/etc/wojak/tls.crt")
    monkeypatch.setenv("WOJAK_SIDECAR_SNS_TLS_KEY_FILE", "/etc/wojak/tls.key")
    assert "https://0.0.0.0:8443/sns" in repr(SnsSidecarSettings().to_config())
    monkeypatch.delenv("WOJAK_SIDECAR_SNS_TOPIC_ARN")
    with pytest.raises(ConfigError, match="TOPIC_ARN is required"):
        SnsSidecarSettings().to_config()
