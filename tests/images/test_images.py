"""The two images, built here with podman and run as a pod runs them (tests/images/conftest.py):
non-root, read-only root filesystem, no capabilities, the engine's socket on a shared volume.

* the engine image holds the engine and its drivers and nothing of the HTTP stack; each image
  installed exactly its lock; neither has a shell;
* the engine refuses to start without its risk config, in one line;
* an order sent to the HTTP sidecar's container is filled by the engine's container (in-process
  sandbox venue, SQLite on a volume); a risk change through the mounted file reaches it; SIGTERM
  stops both cleanly and the order outlives them;
* a message published to RabbitMQ (the shared broker on loopback: the sidecar uses the host's
  network) is executed and acked; SIGTERM mid-stream drains, and after a restart every message
  has executed exactly once.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest

from tests._processes import free_port
from tests.images.conftest import (
    CAPS_SCRIPT,
    REPO,
    TICK_SCRIPT,
    UID,
    assert_each_executed_or_denied_once,
    lock_pins,
    podman,
    rabbit_empty,
    verdicts,
)
from wojak.sidecars.testing.contract import ACCOUNTS, CONTRACT_RISK_CONFIG, TICK, dumps, eventually, order

pytestmark = pytest.mark.slow

HTTP_STACK = {"fastapi", "starlette", "uvicorn", "orjson", "httptools", "websockets", "swagger-ui-bundle-v2"}
BROKER_SDKS = {"aio-pika", "aiormq", "aiokafka", "google-cloud-pubsub"}
KEY = "wjk_image-test-key-0123456789"


def _distributions(image: str) -> dict[str, str]:
    script = ("import importlib.metadata as m, json; "
              "print(json.dumps({d.metadata['Name'].lower().replace('_', '-').replace('.', '-'): d.version for d in m.distributions()}))")  # fmt: skip
    result = podman("run", "--rm", "--network", "none", "--entrypoint", "/opt/wojak/bin/python3", image, "-c", script)
    return json.loads(result.stdout)


def test_each_image_installed_exactly_its_lock_and_the_engine_has_no_http_stack(images):
    engine = _distributions(images.engine)
    assert engine.pop("wojak") and engine == lock_pins(REPO / "requirements" / "engine.lock"), "the engine image is its lock"
    assert not set(engine) & (HTTP_STACK | BROKER_SDKS), sorted(set(engine) & (HTTP_STACK | BROKER_SDKS))
    assert {"couchbase", "boto3", "pyzmq", "pyyaml"} <= set(engine)
    for broker, image in images.sidecars.items():
        sidecar = _distributions(image)
        assert sidecar.pop("wojak") and sidecar == lock_pins(REPO / "requirements" / f"sidecar-{broker}.lock"), broker
        assert not {"couchbase"} & set(sidecar), broker
    assert "aio-pika" in _distributions(images.sidecars["rabbitmq"])
    assert "aio-pika" not in _distributions(images.sidecars["http"])


def test_the_images_run_as_a_numeric_non_root_user_with_labels_and_no_shell(images):
    for image in (images.engine, *images.sidecars.values()):
        config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", image).stdout)
        assert config["User"] == f"{UID}:{UID}", image
        labels = config.get("Labels") or {}
        for label in ("title", "description", "source", "licenses", "version", "revision"):
            assert labels.get(f"org.opencontainers.image.{label}"), f"{image}: org.opencontainers.image.{label}"
        for shell in ("/bin/sh", "/bin/bash", "/usr/bin/sh"):
            tried = podman("run", "--rm", "--network", "none", "--entrypoint", shell, image, "-c", "true", check=False)
            assert tried.returncode != 0 and "no such file" in tried.stderr.lower(), (image, shell, tried.stderr)
        for tool in ("pip", "pip3"):
            tried = podman("run", "--rm", "--network", "none", "--entrypoint", f"/opt/wojak/bin/{tool}", image, check=False)
            assert tried.returncode != 0, (image, tool)
    sidecar = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", images.sidecars["rabbitmq"]).stdout)
    assert sidecar["Labels"]["io.wojak.broker"] == "rabbitmq" and "WOJAK_SIDECAR_BROKER=rabbitmq" in sidecar["Env"]


def test_the_engine_refuses_to_start_without_its_risk_config_in_one_line(images, pod):
    name = pod.start_engine(images.engine, risk=False)
    assert podman("wait", name, timeout=120).stdout.strip() == "2"
    lines = [line for line in pod.logs("engine").splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "WOJAK_ENGINE_RISK_CONFIG is not set" in lines[0], lines
    # a risk file that is not there: one line naming it too
    missing = pod.start_engine(images.engine, "-e", "WOJAK_ENGINE_RISK_CONFIG=/etc/wojak/none.yaml", risk=False, name="engine2")
    assert podman("wait", missing, timeout=120).stdout.strip() == "2"
    lines = [line for line in pod.logs("engine2").splitlines() if line.strip()]
    assert len(lines) == 1 and "/etc/wojak/none.yaml" in lines[0], lines


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"Bearer {KEY}",
                                                                             "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait(check, timeout: float, what: str, alive=lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert alive(), what
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.3)


def test_an_order_to_the_http_sidecar_container_is_filled_and_a_risk_change_reaches_the_engine(images, pod):
    pod.start_engine(images.engine)
    pod.wait_engine()
    port, health = free_port(), free_port()
    # the host's network namespace, on loopback (a pod would listen on 0.0.0.0 behind its Service)
    pod.start("http", images.sidecars["http"], "-v", f"{pod.run_dir}:/run/wojak", "-e", f"WOJAK_API_KEYS={KEY}",
              "-e", "WOJAK_DEV=1", "-e", "WOJAK_SIDECAR_HOST=127.0.0.1", "-e", f"WOJAK_SIDECAR_PORT={port}",
              "-e", "WOJAK_SIDECAR_HEALTH_HOST=127.0.0.1", "-e", f"WOJAK_SIDECAR_HEALTH_PORT={health}",
              network="host")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    _wait(lambda: _ready(f"{base}/readyz"), 90, "the HTTP sidecar's /readyz", lambda: pod.running("http"))

    for which in ("engine", "http"):  # as the restricted profile asks: no capability, nothing writable
        caps = pod.exec(which, "/opt/wojak/bin/python3", "-c", CAPS_SCRIPT)
        assert caps.stdout.split() == ["0000000000000000"] * 3, caps.stdout + caps.stderr
        written = pod.exec(which, "/opt/wojak/bin/python3", "-c", "open('/opt/wojak/x', 'w')")
        assert written.returncode != 0 and "Read-only file system" in written.stderr, written.stderr
    socket_dir = pod.exec("http", "/opt/wojak/bin/python3", "-c", "import os; s = os.stat('/run/wojak/engine'); print(oct(s.st_mode & 0o777), s.st_uid)")
    assert socket_dir.stdout.split() == ["0o700", str(UID)], socket_dir.stdout + socket_dir.stderr

    assert _http("POST", f"{base}/v1/ticks", TICK)[0] == 200
    status, reply = _http("POST", f"{base}/v1/orders", order("img-1", account="desk-1"))
    assert status == 200 and reply["verdict"] == "filled", reply
    assert reply["order"]["filled_quantity"] == "1"
    assert pod.executions() == {"img-1": 1}

    # a risk change through the mounted file: HALTED, and the next order is denied
    demo = (pod.risk_dir / "risk.yaml").read_text()
    pod.write_risk(demo.replace("trading_state: ACTIVE", "trading_state: HALTED", 1))
    answers: list[dict[str, Any]] = []

    def halted() -> bool:
        status, reply = _http("POST", f"{base}/v1/orders", order(f"img-h-{len(answers)}", account="desk-1"))
        answers.append(reply)
        return status == 200 and reply["verdict"] == "denied" and "trading_halted" in str(reply.get("reason"))

    _wait(halted, 30, "the engine to deny orders after the risk file says HALTED")
    assert all(a["verdict"] in ("filled", "denied") for a in answers), answers

    # SIGTERM: the sidecar stops, then the engine, both cleanly; the store outlives them
    assert pod.stop("http") == 0, pod.logs("http")[-3000:]
    assert pod.stop("engine") == 0, pod.logs("engine")[-3000:]
    assert "Traceback" not in pod.logs("engine") + pod.logs("http")
    pod.start_engine(images.engine, name="engine")
    pod.wait_engine()
    stored = pod.engine_orders()
    assert stored["img-1"]["state"] == "filled", stored["img-1"]


# Orders the RabbitMQ SIGTERM tests publish, and the sandbox's round trip: with a prefetch of 16
# (orders of one account go to the venue one batch at a time) at most 160 orders a second, so the
# stream lasts seconds and the SIGTERM lands mid-stream however fast the machine.
STREAM = 1000
STREAM_LATENCY_MS = "100"


@pytest.mark.rabbitmq
async def test_a_message_published_to_rabbitmq_is_executed_and_acked_and_sigterm_drains(images, pod, rabbit):
    pod.write_risk(CONTRACT_RISK_CONFIG)  # the contract's limits (order rates no sidecar reaches): this is about delivery
    pod.start_engine(images.engine, "-e", f"WOJAK_SANDBOX_LATENCY_MS={STREAM_LATENCY_MS}")
    await asyncio.to_thread(pod.wait_engine)
    c = rabbit.config
    env = {"WOJAK_SIDECAR_RABBITMQ_URL": rabbit.url, "WOJAK_SIDECAR_RABBITMQ_QUEUE": c.queue,
           "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_EXCHANGE": c.dead_letter_exchange,
           "WOJAK_SIDECAR_RABBITMQ_DEAD_LETTER_QUEUE": c.dead_letter_queue, "WOJAK_SIDECAR_ACCOUNTS": ACCOUNTS,
           "WOJAK_SIDECAR_HEALTH_HOST": "127.0.0.1", "WOJAK_SIDECAR_HEALTH_PORT": str(free_port()),
           "WOJAK_SIDECAR_RABBITMQ_PREFETCH": "16"}  # fmt: skip
    args = ["-v", f"{pod.run_dir}:/run/wojak"] + [x for k, v in env.items() for x in ("-e", f"{k}={v}")]

    def start_sidecar() -> None:
        pod.start("rabbitmq", images.sidecars["rabbitmq"], *args, network="host")

    await asyncio.to_thread(start_sidecar)
    # the engine prices orders from the last tick: one, through the engine client in the sidecar's container
    sent = await asyncio.to_thread(pod.exec, "rabbitmq", "/opt/wojak/bin/python3", "-c", TICK_SCRIPT)
    assert sent.returncode == 0 and json.loads(sent.stdout)["verdict"] == "ok", sent.stdout + sent.stderr

    await rabbit.publish(dumps(order("rmq-1")), "rmq-1")

    def executed() -> bool:
        assert pod.running("rabbitmq"), pod.logs("rabbitmq")[-3000:]
        return pod.executions().get("rmq-1") == 1

    await eventually(executed, 60, "the message's order at the venue")
    await eventually(lambda: rabbit_empty(rabbit), 30, "the message acked")
    assert (await asyncio.to_thread(pod.engine_orders))["rmq-1"]["state"] == "filled"
    assert await rabbit.dead_letters() == []

    # SIGTERM mid-stream: the sidecar drains (in-flight ones finish or go back, exactly once), exits 0
    ids = [f"rmq-s-{i}" for i in range(STREAM)]
    await asyncio.gather(*(rabbit.publish(dumps(order(i)), i) for i in ids))
    await eventually(lambda: len(pod.executions()) > 20, 60, "the stream to start")
    assert await asyncio.to_thread(pod.stop, "rabbitmq", 60) == 0, pod.logs("rabbitmq")[-3000:]
    assert await rabbit.pending() > 0, "stopped mid-stream (else it proves nothing about the drain)"

    # restarted: every message gets one verdict (executed once, or denied once and never executed) and is acked
    await asyncio.to_thread(start_sidecar)

    def stored() -> dict[str, dict[str, Any]]:
        return pod.engine_orders(limit=5 * STREAM)

    try:
        await eventually(lambda: len(verdicts(ids, stored())) == STREAM, 120, "every message's verdict after the restart")
        await eventually(lambda: rabbit_empty(rabbit), 30, "every message acked")
    except AssertionError as exc:  # say where the rest are: queued, dead-lettered, or held by a process
        letters = await rabbit.dead_letters()
        raise AssertionError(f"{exc}: {len(pod.executions())} executed, the store holds "
                             f"{Counter(o['state'] for o in stored().values())}, {await rabbit.pending()} ready in the "
                             f"queue, {len(letters)} dead-lettered {[d.reason for d in letters][:5]}\n--- sidecar\n"
                             f"{pod.logs('rabbitmq')[-4000:]}\n--- engine\n{pod.logs('engine')[-3000:]}") from None  # fmt: skip
    executions = pod.executions()
    assert executions.pop("rmq-1") == 1
    denied = assert_each_executed_or_denied_once(ids, stored(), executions)
    print(f"RabbitMQ container drain: {STREAM - len(denied)} executed, {len(denied)} denied {Counter(denied.values())}")
    assert not denied, f"denied under limits no order here reaches: {Counter(denied.values())}"
    assert await rabbit.dead_letters() == []
    assert await asyncio.to_thread(pod.stop, "rabbitmq") == 0
    assert await asyncio.to_thread(pod.stop, "engine") == 0
