"""pytest plugin: real services on loopback for tests (see scripts/services).

Register it from tests/conftest.py with ``pytest_plugins = ["tests._services"]``.

* Markers ``rabbitmq``, ``kafka``, ``pubsub``, ``aws``, ``couchbase``, ``lambda``: a test that
  carries one automatically gets that service's session fixture, so the service is up.
* Session fixtures ``rabbitmq_service``, ``kafka_service``, ``pubsub_service``, ``aws_service``,
  ``couchbase_service``, ``lambda_service`` return a frozen dataclass of connection details.

If the service's variables are already in the environment (an outer
``eval "$(scripts/services up)"`` or ``scripts/services env``), they are used as they are.
Otherwise the fixture runs ``scripts/services up NAME`` once per session, puts the variables
it prints into ``os.environ`` for the session, and stops at the end of the session what it
started (keep it running with ``WOJAK_TEST_SERVICES_KEEP=1``). If the service cannot come
up, every test that needs it FAILS (setup error) with the service's log tail: it never skips.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "services"
UP_TIMEOUT = float(os.environ.get("WOJAK_TEST_SERVICES_TIMEOUT", "1800"))

# service -> the variable whose presence means "already provided by the environment"
PRIMARY_VAR = {
    "rabbitmq": "WOJAK_TEST_RABBITMQ_URL",
    "kafka": "WOJAK_TEST_KAFKA_BOOTSTRAP",
    "pubsub": "PUBSUB_EMULATOR_HOST",
    "aws": "WOJAK_TEST_AWS_ENDPOINT",
    "couchbase": "WOJAK_TEST_COUCHBASE_URL",
    "lambda": "WOJAK_TEST_LAMBDA_ENDPOINT",
}
SERVICE_VARS = {
    "rabbitmq": ("WOJAK_TEST_RABBITMQ_URL",),
    "kafka": ("WOJAK_TEST_KAFKA_BOOTSTRAP",),
    "pubsub": ("PUBSUB_EMULATOR_HOST", "PUBSUB_PROJECT_ID"),
    "aws": ("WOJAK_TEST_AWS_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"),
    "couchbase": ("WOJAK_TEST_COUCHBASE_URL", "WOJAK_TEST_COUCHBASE_USERNAME",
                  "WOJAK_TEST_COUCHBASE_PASSWORD", "WOJAK_TEST_COUCHBASE_BUCKET"),
    "lambda": ("WOJAK_TEST_LAMBDA_ENDPOINT", "WOJAK_TEST_LAMBDA_FUNCTION"),
}
MARKERS = {
    "rabbitmq": "needs a real RabbitMQ on loopback (scripts/services up rabbitmq)",
    "kafka": "needs a real Kafka (KRaft) on loopback (scripts/services up kafka)",
    "pubsub": "needs the Google Pub/Sub emulator on loopback (scripts/services up pubsub)",
    "aws": "needs moto_server (SQS/SNS/Kinesis) on loopback (scripts/services up aws)",
    "couchbase": "needs the gocaves Couchbase mock on loopback (scripts/services up couchbase)",
    "lambda": "needs the Lambda runtime emulator running wojak's sandbox handler (scripts/services up lambda)",
}


@dataclass(frozen=True)
class _Base:
    env: Mapping[str, str] = field(repr=False)
    started_here: bool = field(default=False, repr=False)


@dataclass(frozen=True)
class RabbitMQService(_Base):
    url: str = ""


@dataclass(frozen=True)
class KafkaService(_Base):
    bootstrap: str = ""


@dataclass(frozen=True)
class PubSubService(_Base):
    host: str = ""  # host:port, as PUBSUB_EMULATOR_HOST
    project: str = ""

    @property
    def base_url(self) -> str:
        return f"http://{self.host}/v1/projects/{self.project}"


@dataclass(frozen=True)
class AwsService(_Base):
    endpoint_url: str = ""
    region: str = "us-east-1"
    access_key_id: str = "testing"
    secret_access_key: str = "testing"

    def client(self, service: str):
        """A boto3 client for `service` pointed at moto (boto3 must be installed)."""
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key_id,
                            aws_secret_access_key=self.secret_access_key)


@dataclass(frozen=True)
class CouchbaseService(_Base):
    url: str = ""
    username: str = ""
    password: str = ""
    bucket: str = ""


@dataclass(frozen=True)
class LambdaService(_Base):
    endpoint_url: str = ""
    function_name: str = "function"

    def client(self):
        """A boto3 Lambda client for the emulator (dummy credentials)."""
        import boto3

        return boto3.client("lambda", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")


def _build(name: str, env: Mapping[str, str], started: bool):
    e = dict(env)
    if name == "rabbitmq":
        return RabbitMQService(e, started, url=e["WOJAK_TEST_RABBITMQ_URL"])
    if name == "kafka":
        return KafkaService(e, started, bootstrap=e["WOJAK_TEST_KAFKA_BOOTSTRAP"])
    if name == "pubsub":
        return PubSubService(e, started, host=e["PUBSUB_EMULATOR_HOST"], project=e.get("PUBSUB_PROJECT_ID", "test"))
    if name == "aws":
        return AwsService(e, started, endpoint_url=e["WOJAK_TEST_AWS_ENDPOINT"],
                          region=e.get("AWS_DEFAULT_REGION", "us-east-1"),
                          access_key_id=e.get("AWS_ACCESS_KEY_ID", "testing"),
                          secret_access_key=e.get("AWS_SECRET_ACCESS_KEY", "testing"))
    if name == "couchbase":
        return CouchbaseService(e, started, url=e["WOJAK_TEST_COUCHBASE_URL"],
                                username=e.get("WOJAK_TEST_COUCHBASE_USERNAME", "Administrator"),
                                password=e.get("WOJAK_TEST_COUCHBASE_PASSWORD", "password"),
                                bucket=e.get("WOJAK_TEST_COUCHBASE_BUCKET", "default"))
    if name == "lambda":
        return LambdaService(e, started, endpoint_url=e["WOJAK_TEST_LAMBDA_ENDPOINT"],
                             function_name=e.get("WOJAK_TEST_LAMBDA_FUNCTION", "function"))
    raise KeyError(name)


def _parse_exports(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        for token in shlex.split(line[len("export "):]):
            key, sep, value = token.partition("=")
            if sep:
                out[key] = value
    return out


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def _tail(text: str, lines: int = 80) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _provide(name: str, mp: pytest.MonkeyPatch):
    if os.environ.get(PRIMARY_VAR[name]):
        return _build(name, {k: os.environ[k] for k in SERVICE_VARS[name] if k in os.environ}, False)
    try:
        env_now = _parse_exports(_script("env", name, timeout=60).stdout)
    except subprocess.TimeoutExpired:
        env_now = {}
    started = False
    if env_now.get(PRIMARY_VAR[name]):
        env = env_now  # already up (an earlier `scripts/services up`): use it, leave it running
    else:
        try:
            proc = _script("up", name, timeout=UP_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            pytest.fail(f"`scripts/services up {name}` did not finish in {UP_TIMEOUT:.0f}s:\n{_tail(err)}",
                        pytrace=False)
        env = _parse_exports(proc.stdout)
        if proc.returncode != 0 or not env.get(PRIMARY_VAR[name]):
            pytest.fail(f"`scripts/services up {name}` failed (exit {proc.returncode}); "
                        f"the service could not be had:\n{_tail(proc.stderr)}", pytrace=False)
        started = True
    for k, v in env.items():
        mp.setenv(k, v)
    return _build(name, env, started)


def _make_fixture(name: str):
    @pytest.fixture(scope="session", name=f"{name}_service")
    def _fixture():
        mp = pytest.MonkeyPatch()
        info = _provide(name, mp)
        try:
            yield info
        finally:
            mp.undo()
            if info.started_here and os.environ.get("WOJAK_TEST_SERVICES_KEEP", "") in ("", "0"):
                try:
                    _script("down", name, timeout=120)
                except subprocess.TimeoutExpired:
                    pass

    _fixture.__doc__ = f"Session fixture: {MARKERS[name]}."
    return _fixture


rabbitmq_service = _make_fixture("rabbitmq")
kafka_service = _make_fixture("kafka")
pubsub_service = _make_fixture("pubsub")
aws_service = _make_fixture("aws")
couchbase_service = _make_fixture("couchbase")
lambda_service = _make_fixture("lambda")


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", None)
        if names is None:
            continue
        for name in MARKERS:
            if item.get_closest_marker(name) is not None and f"{name}_service" not in names:
                names.append(f"{name}_service")
