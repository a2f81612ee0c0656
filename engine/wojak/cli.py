"""The ``wojak`` command: ``dev``, ``engine``, ``engine ping``, ``sidecar http|rabbitmq``, ``orders``, ``trades``,
``accounts``, ``audit``, ``keys new``, ``sandbox package``."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger("wojak")


def _logging(verbose: bool = False) -> None:
    level = os.environ.get("WOJAK_LOG_LEVEL", "DEBUG" if verbose else "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(message: str) -> int:
    print(f"wojak: {message}", file=sys.stderr)
    return 2


# -- engine -----------------------------------------------------------------------------


def cmd_engine(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from wojak.engine.app import EngineSettings, main
    from wojak.engine.risk import RiskConfigError
    from wojak.engine.transport import EngineAlreadyRunning, SocketDirError

    _logging(args.verbose)
    try:
        config = EngineSettings().to_config()
        main(config)
    except ValidationError as exc:
        return _fail(f"engine settings: {exc}")
    except (EngineAlreadyRunning, SocketDirError, RiskConfigError, ValueError) as exc:
        return _fail(str(exc))
    return 0


async def _ping(socket_path: str, deadline: float) -> dict[str, Any]:
    from wojak.engine.protocol import MessageType
    from wojak.engine.protocol.client import EngineClient

    async with EngineClient(socket_path) as client:
        return await client.request(MessageType.PING, {}, deadline)


def _ping_candidates(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """Where an engine may answer, with where that path came from: WOJAK_ENGINE_SOCKET, a
    `wojak dev` in --data-dir (./.wojak by default; its socket or the fallback for long paths),
    then the default path."""
    from wojak.engine.protocol import default_socket_path

    data_dir = Path(args.data_dir).resolve()
    found: list[tuple[Path, str]] = []
    if os.environ.get("WOJAK_ENGINE_SOCKET"):
        found.append((Path(os.environ["WOJAK_ENGINE_SOCKET"].removeprefix("ipc://")), "WOJAK_ENGINE_SOCKET"))
    found.append((data_dir / "run" / "engine.sock", f"wojak dev in {args.data_dir}"))
    found.append((_dev_socket(data_dir), f"wojak dev in {args.data_dir}"))
    found.append((Path(default_socket_path()), "default"))
    unique: list[tuple[Path, str]] = []
    for path, origin in found:
        if all(path != seen for seen, _ in unique):
            unique.append((path, origin))
    return unique


def cmd_engine_ping(args: argparse.Namespace) -> int:
    if args.socket:
        candidates = [(Path(args.socket.removeprefix("ipc://")), "--socket")]
    else:
        candidates = _ping_candidates(args)
    tried: list[str] = []
    for path, origin in candidates:
        if not args.socket and not _is_socket(path):
            tried.append(f"ipc://{path} ({origin}): no socket there")
            continue
        reply = asyncio.run(_ping(str(path), args.timeout))
        if reply.get("verdict") == "ok":
            print(f"engine ok: pid {reply['pid']}, version {reply['version']}, ipc://{path}")
            return 0
        tried.append(f"ipc://{path} ({origin}): no answer within {args.timeout:g}s ({reply.get('reason')})")
    print("wojak: no engine answered; tried:", file=sys.stderr)
    for line in tried:
        print(f"  {line}", file=sys.stderr)
    if not args.socket:
        print(
            "start one with `wojak dev` (here, or pass --data-dir DIR for one started elsewhere), "
            "or name its socket: wojak engine ping --socket ipc://PATH (`wojak dev` prints it on its first line)",
            file=sys.stderr,
        )
    return 1


# -- sidecars ---------------------------------------------------------------------------


def cmd_sidecar_http(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from wojak.engine.protocol.runtime import run
    from wojak.sidecars.http import HttpSidecarSettings, serve

    _logging(args.verbose)
    try:
        config = HttpSidecarSettings().to_config()
    except (ValidationError, ValueError) as exc:
        return _fail(f"HTTP sidecar settings: {exc}")
    from wojak.engine.protocol import SocketDirError
    from wojak.engine.protocol.client import check_engine_socket

    try:  # before uvicorn starts: one line, not a start-up traceback
        check_engine_socket(config.engine_socket)
    except SocketDirError as exc:
        return _fail(str(exc))
    log.info("HTTP sidecar on http://%s:%d, engine at ipc://%s", config.host, config.port, config.engine_socket)
    run(serve(config))
    return 0


def cmd_sidecar_rabbitmq(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        from wojak.engine.protocol.runtime import run
        from wojak.sidecars.rabbitmq import RabbitMQSidecarSettings, serve
    except ImportError as exc:
        return _fail(str(exc))
    _logging(args.verbose)
    try:
        config = RabbitMQSidecarSettings().to_config()
    except (ValidationError, ValueError) as exc:
        return _fail(f"RabbitMQ sidecar settings: {exc}")
    log.info("RabbitMQ sidecar: %r, engine at ipc://%s", config, config.runner.engine_socket if config.runner else "")
    run(serve(config))
    return 0


# -- dev --------------------------------------------------------------------------------


def _dev_socket(data_dir: Path) -> Path:
    path = data_dir / "run" / "engine.sock"
    if len(str(path)) <= 100:  # AF_UNIX paths are limited to 107 bytes
        return path
    from wojak.engine.protocol import default_socket_path

    digest = hashlib.blake2b(str(data_dir).encode(), digest_size=4).hexdigest()
    return Path(default_socket_path()).parent / f"dev-{digest}" / "engine.sock"


def _private_dir(path: Path) -> None:
    """Make ``path`` (the dev data directory: store, ledger, API key) 0700, tightening an existing one."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = path.stat().st_mode & 0o777
    if mode != 0o700:
        os.chmod(path, 0o700)
        print(f"wojak: {path} was {mode:04o}; made it 0700 (it holds the API key)", file=sys.stderr)


def _dev_key(data_dir: Path) -> tuple[str, bool]:
    if os.environ.get("WOJAK_API_KEYS"):
        return os.environ["WOJAK_API_KEYS"].split(",")[0].strip(), False
    key_file = data_dir / "api-key"
    if key_file.exists():
        mode = key_file.stat().st_mode & 0o777
        if mode != 0o600:
            os.chmod(key_file, 0o600)
            print(f"wojak: {key_file} was {mode:04o}; made it 0600", file=sys.stderr)
        key = key_file.read_text().strip()
        if key:
            return key, False
    key = "wjk_" + secrets.token_urlsafe(24)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    os.chmod(key_file, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    return key, True


def _demo_risk_config() -> str:
    """The packaged demo risk file `wojak dev` hands the engine (the embedded default)."""
    try:
        from wojak.engine.risk import demo_risk_config_path  # type: ignore[attr-defined]
    except ImportError:
        from importlib.resources import files

        return str(files("wojak.engine.risk").joinpath("default_risk.yaml"))
    return str(demo_risk_config_path())


def _port_problem(host: str, port: int) -> str | None:
    """Why the HTTP sidecar could not listen on host:port (bound like uvicorn binds it), or None."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve --host {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            return f"port {port} on {host} is not free ({exc.strerror or exc})"
    return None


def _is_socket(path: Path) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


def _engine_pid(socket_path: Path, deadline: float = 0.3) -> int | None:
    """The pid of the engine answering on ``socket_path``, or None."""
    if not _is_socket(socket_path):
        return None
    reply = asyncio.run(_ping(str(socket_path), deadline))
    return reply.get("pid") if reply.get("verdict") == "ok" else None


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


def _die_with_parent() -> Any:
    """A preexec_fn that asks Linux to SIGTERM the child when `wojak dev` dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class _Interrupts:
    """SIGINT/SIGTERM for `wojak dev`: the first asks for a clean stop, a second one kills."""

    def __init__(self) -> None:
        self.count = 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1

    @property
    def stopping(self) -> bool:
        return self.count > 0

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False if a stop was asked for meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return not self.stopping


class _Child:
    """One supervised child of `wojak dev`: started in its own session (a Ctrl-C on the terminal
    reaches only `wojak dev`, which stops the children with SIGTERM, so none prints a
    KeyboardInterrupt traceback), restarted with capped exponential backoff when it dies."""

    BACKOFF_FIRST = 0.5
    BACKOFF_CAP = 30.0
    STABLE_AFTER = 30.0  # a child that ran this long before dying restarts from the first delay again
    READY_TIMEOUT = 30.0

    def __init__(self, name: str, argv: list[str], env: dict[str, str], ready: Any) -> None:
        self.name, self.argv, self.env, self.ready = name, argv, env, ready
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.failures = 0  # consecutive quick deaths: the backoff exponent
        self.state = "stopped"  # starting | running | waiting | stopped
        self.restart_at = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True, preexec_fn=_die_with_parent())
        self.started_at = time.monotonic()
        self.state = "starting"

    def wait_ready(self, interrupts: _Interrupts) -> bool:
        """Wait for the first start; False if interrupted. RuntimeError if it dies or never gets ready."""
        assert self.proc is not None
        deadline = time.monotonic() + self.READY_TIMEOUT
        while not interrupts.stopping:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} {_describe_exit(self.proc.returncode)} while starting")
            if self.ready():
                self.state = "running"
                return True
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not become ready within {self.READY_TIMEOUT:.0f}s")
            interrupts.sleep(0.1)
        return False

    def supervise(self) -> None:
        """One look at the child: notice a death, restart after the backoff, report it back up."""
        now = time.monotonic()
        if self.state == "waiting":
            if now >= self.restart_at:
                self.start()
            return
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            uptime = now - self.started_at
            self.failures = 1 if uptime >= self.STABLE_AFTER else self.failures + 1
            delay = min(self.BACKOFF_CAP, self.BACKOFF_FIRST * 2 ** (self.failures - 1))
            self.restarts += 1
            self.state, self.restart_at = "waiting", now + delay
            print(
                f"wojak: {self.name} {_describe_exit(code)} after {uptime:.0f}s; restarting it in {delay:g}s "
                f"(restart {self.restarts})",
                file=sys.stderr, flush=True,
            )  # fmt: skip
        elif self.state == "starting":
            if self.ready():
                self.state = "running"
                print(f"wojak: {self.name} is back (pid {self.proc.pid}, restart {self.restarts})", file=sys.stderr, flush=True)
            elif now - self.started_at > self.READY_TIMEOUT:
                print(f"wojak: {self.name} not ready after {self.READY_TIMEOUT:.0f}s; killing it", file=sys.stderr, flush=True)
                self.proc.kill()

    def stop(self, grace: float, interrupts: _Interrupts) -> None:
        """SIGTERM, wait up to ``grace`` (a second Ctrl-C cuts it short), then SIGKILL."""
        proc, self.state = self.proc, "stopped"
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        asked = interrupts.count
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline and interrupts.count <= asked:
            time.sleep(0.05)
        if proc.poll() is None:
            why = "Ctrl-C again" if interrupts.count > asked else f"did not stop within {grace:.0f}s"
            print(f"  {self.name}: {why}; killing it", file=sys.stderr, flush=True)
            proc.kill()
        proc.wait()
        print(f"  {self.name} stopped", flush=True)


def cmd_dev(args: argparse.Namespace) -> int:
    interrupts = _Interrupts()  # before anything slow: a Ctrl-C from here on never prints a traceback
    data_dir = Path(args.data_dir).resolve()
    if not 0 < args.port < 65536:
        return _fail(f"--port {args.port}: use a port from 1 to 65535")
    problem = _port_problem(args.host, args.port)
    if problem:
        return _fail(f"{problem}: stop what holds it, or choose another port with `wojak dev --port {args.port + 1}`")
    try:
        _private_dir(data_dir)
        socket_path = _dev_socket(data_dir)
        running = _engine_pid(socket_path)
        if running:
            return _fail(
                f"an engine (pid {running}) already answers on ipc://{socket_path}: is `wojak dev` already running "
                f"with {data_dir}? Stop it first, or use another --data-dir"
            )
        keys_file = os.environ.get("WOJAK_API_KEYS_FILE", "").strip()
        key, generated = ("", False) if keys_file else _dev_key(data_dir)
    except OSError as exc:
        return _fail(f"data directory {data_dir}: {exc}")
    env = dict(os.environ)
    own_risk = env.get("WOJAK_ENGINE_RISK_CONFIG")
    env.update(
        WOJAK_DEV="1",
        WOJAK_ENGINE_SOCKET=str(socket_path),
        WOJAK_ENGINE_RISK_CONFIG=own_risk or _demo_risk_config(),
        WOJAK_STORE=env.get("WOJAK_STORE", f"sqlite:///{data_dir / 'wojak.sqlite'}"),
        WOJAK_VENUE=env.get("WOJAK_VENUE", f"sandbox:?ledger={data_dir / 'sandbox.sqlite'}"),
        WOJAK_SIDECAR_PORT=str(args.port),
        WOJAK_SIDECAR_HOST=args.host,
    )
    if not keys_file:  # the sidecar takes a keys file or WOJAK_API_KEYS, never both
        env["WOJAK_API_KEYS"] = env.get("WOJAK_API_KEYS") or key
    python = [sys.executable, "-m", "wojak"]
    url = f"http://{args.host}:{args.port}"
    engine = _Child("engine", [*python, "engine"], env, lambda: _engine_pid(socket_path) is not None)
    sidecar = _Child("HTTP sidecar", [*python, "sidecar", "http"], env, lambda: _http_ok(f"{url}/readyz"))
    children = (engine, sidecar)
    try:
        print(f"[1/3] starting the engine (store {env['WOJAK_STORE']}, socket ipc://{socket_path})", flush=True)
        engine.start()
        if not engine.wait_ready(interrupts):
            return 0
        print(f"[2/3] starting the HTTP sidecar on {url}", flush=True)
        sidecar.start()
        if not sidecar.wait_ready(interrupts):  # "ready" only once its own /readyz answers 200
            return 0
        print("[3/3] ready\n", flush=True)
        print(f"  API:      {url}/v1/orders   (docs: {url}/docs, metrics: {url}/metrics)")
        if keys_file:
            print(f"  API keys: from {keys_file} (WOJAK_API_KEYS_FILE; `wojak keys new` makes one)")
            key = "$KEY"
        else:
            print(f"  API key:  {key}" + ("   (generated, saved in " + str(data_dir / "api-key") + ")" if generated else ""))
        print(f"  data:     {data_dir}")
        if own_risk:
            print(f"  risk:     {own_risk} (WOJAK_ENGINE_RISK_CONFIG; reloaded when it changes)\n")
        else:
            print("  risk:     the demo risk limits; to use your own: WOJAK_ENGINE_RISK_CONFIG=my-risk.yaml wojak dev\n")
        print("  Try it:")
        print(f"    curl -s -H \"Authorization: Bearer {key}\" -H 'Content-Type: application/json' \\")
        print(f"      -d '{{\"symbol\":\"NIFTY-FUT\",\"bid\":\"24000\",\"ask\":\"24001\",\"last\":\"24000.5\"}}' {url}/v1/ticks")
        print(f"    curl -s -H \"Authorization: Bearer {key}\" -H 'Content-Type: application/json' \\")
        print("      -d '{\"client_order_id\":\"first-1\",\"account\":\"desk-1\",\"symbol\":\"NIFTY-FUT\",\"side\":\"buy\",")
        print(f"           \"quantity\":\"50\",\"order_type\":\"limit\",\"limit_price\":\"24001\"}}' {url}/v1/orders\n")
        print("  Ctrl-C stops everything; data stays in the data directory.", flush=True)
        while interrupts.sleep(0.2):
            for child in children:
                child.supervise()
        return 0
    except RuntimeError as exc:
        print(f"wojak: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("stopping: HTTP sidecar first (drains requests), then the engine", flush=True)
        sidecar.stop(30, interrupts)
        engine.stop(30, interrupts)
        restarts = ", ".join(f"{c.name} {c.restarts}" for c in children if c.restarts)
        print("stopped" + (f" (restarts: {restarts})" if restarts else ""), flush=True)


# -- reports ----------------------------------------------------------------------------


def _store_url(args: argparse.Namespace) -> str:
    if args.store:
        return args.store
    if os.environ.get("WOJAK_STORE"):
        return os.environ["WOJAK_STORE"]
    return f"sqlite:///{Path(args.data_dir).resolve() / 'wojak.sqlite'}"


def _open_existing_store(args: argparse.Namespace) -> Any:
    """The store the report commands read; None (after saying what to do) if there is none."""
    from wojak.engine.store import open_store

    url = _store_url(args)
    if url.startswith("sqlite:") and not Path(url.split("sqlite:///", 1)[-1].split("?")[0]).exists():
        _fail(f"no store at {url}: run `wojak dev` first or pass --store / --data-dir")
        return None
    return open_store(url)


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(c), *(len(str(r.get(c) if r.get(c) is not None else "")) for r in rows)) for c in columns]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(r.get(c) if r.get(c) is not None else "").ljust(w) for c, w in zip(columns, widths)).rstrip())
    return "\n".join(lines)


def _report(args: argparse.Namespace, kind: str) -> int:
    store = _open_existing_store(args)
    if store is None:
        return 2

    async def fetch() -> list[dict[str, Any]]:
        try:
            if kind == "orders":
                return [o.to_wire() for o in await store.list_orders(args.limit, args.account)]
            return [t.to_wire() for t in await store.list_trades(args.limit, account=args.account)]
        finally:
            await store.close()

    rows = asyncio.run(fetch())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        for k in ("created_at", "executed_at"):
            if r.get(k):
                r[k] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r[k]))
    if kind == "orders":
        cols = ("created_at", "client_order_id", "account", "symbol", "side", "quantity", "order_type",
                "limit_price", "state", "filled_quantity", "average_price", "reason")  # fmt: skip
    else:
        cols = ("executed_at", "trade_id", "account", "symbol", "side", "quantity", "price", "venue_order_id")
    print(_table(rows, cols))
    return 0


def cmd_sandbox_package(args: argparse.Namespace) -> int:
    from wojak.engine.venue.package import PackageError, build_package

    try:
        pkg = build_package(args.output)
    except (PackageError, OSError) as exc:
        return _fail(f"sandbox package: {exc}")
    print(f"{pkg.path}  {pkg.size} bytes  sha256 {pkg.sha256}  (base64 {pkg.sha256_base64})")
    return 0


def _actor() -> str:
    """Who a CLI change is recorded as in the audit log: ``cli:<login user>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name and no passwd entry (e.g. an arbitrary container uid)
        return f"cli:uid-{os.getuid()}"


def cmd_accounts(args: argparse.Namespace) -> int:
    """List accounts the store holds in a trading state (e.g. HALTED after a daily-loss breach),
    or set / clear one. The engine reads the stored state on every order: no restart. Every
    change is appended to the store's audit log with who made it (`wojak audit`)."""
    store = _open_existing_store(args)
    if store is None:
        return 2
    actor = _actor()

    async def act() -> list[dict[str, Any]]:
        try:
            if args.action == "resume":
                await store.set_account_state(args.account, None, args.reason or "", actor=actor)
            elif args.action in ("halt", "reduce"):
                state = "HALTED" if args.action == "halt" else "REDUCING"
                reason = args.reason or f"set by `wojak accounts {args.action}`"
                await store.set_account_state(args.account, state, reason, actor=actor)
            return await store.list_account_states()
        finally:
            await store.close()

    rows = asyncio.run(act())
    if args.action == "resume":
        print(
            f"{args.account}: stored trading state cleared; the risk configuration's state applies again "
            "(the audit log keeps the history: wojak audit)",
            file=sys.stderr,
        )
    elif args.action in ("halt", "reduce"):
        print(f"{args.account}: stored as {'HALTED' if args.action == 'halt' else 'REDUCING'} by {actor}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        r["at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["at"])) if r.get("at") else ""
    print(_table(rows, ("account", "state", "reason", "at")))
    return 0


def _detail(detail: Any) -> str:
    """An audit entry's detail on one line: ``key=value`` pairs, values with spaces quoted."""
    if not isinstance(detail, dict):
        return "" if detail is None else str(detail)
    parts = []
    for k, v in detail.items():
        text = v if isinstance(v, str) else json.dumps(v, default=str, separators=(",", ":"))
        if text == "" or any(c.isspace() or c in "\"=" for c in text):
            text = json.dumps(text)
        parts.append(f"{k}={text}")
    return " ".join(parts)


def cmd_audit(args: argparse.Namespace) -> int:
    """The store's append-only audit log, newest first."""
    if args.limit < 1:
        return _fail("--limit must be at least 1")
    store = _open_existing_store(args)
    if store is None:
        return 2

    async def fetch() -> list[dict[str, Any]]:
        try:
            return await store.list_audit(limit=args.limit)
        finally:
            await store.close()

    rows = asyncio.run(fetch())
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    table = [
        {
            "time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["at"])) if r.get("at") else "",
            "kind": r.get("kind"), "actor": r.get("actor"), "subject": r.get("subject"), "detail": _detail(r.get("detail")),
        }
        for r in rows
    ]  # fmt: skip
    print(_table(table, ("time", "kind", "actor", "subject", "detail")))
    return 0


def _keys_file_entry(entry: dict[str, Any]) -> str:
    """The entry as YAML to paste under ``principals:`` (indented like the documented file; every
    value quoted, so a pattern such as ``*`` or an all-digit hash stays a string)."""
    lines = [f"{k}: {json.dumps(v)}" for k, v in entry.items()]
    return "\n".join(("  - " if i == 0 else "    ") + line for i, line in enumerate(lines))


def cmd_keys_new(args: argparse.Namespace) -> int:
    """A new API key, printed once, and the keys-file entry (only the key's hash) to paste."""
    import re

    from wojak.sidecars._core.keys import new_key

    try:
        key, entry = new_key(args.name, args.accounts, args.scopes)
    except ValueError as exc:  # unknown scope, bad account pattern, bad name: one line
        message = re.sub(r"^principals\[0\](?: \([^)]*\))?: ", "", str(exc).strip()).splitlines()
        return _fail(f"keys new: {message[0] if message else 'invalid key'}")
    if args.json:
        print(json.dumps({"key": key, "entry": entry}, indent=2))
        return 0
    # The key goes to stderr, the entry to stdout: `wojak keys new ... >> keys.yaml` appends the
    # entry and still shows the key, which never lands in the keys file.
    print(f"API key for {args.name} (shown once: only its sha256 is kept, in the entry below):\n\n  {key}\n", file=sys.stderr)
    print(
        "Add this entry under `principals:` in the keys file (WOJAK_API_KEYS_FILE; a new file starts with the"
        " line `principals:`). The HTTP sidecar reloads the file without a restart.\n",
        file=sys.stderr, flush=True,
    )  # fmt: skip
    print(_keys_file_entry(entry), flush=True)
    return 0


# -- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wojak", description="A small, fast, fail-closed trade-execution engine.")
    parser.add_argument("--version", action="version", version=f"wojak {__import__('wojak.engine').engine.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the engine and the HTTP sidecar locally, with no configuration")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--data-dir", default=".wojak", help="store, sandbox ledger, API key and socket (default ./.wojak)")
    dev.set_defaults(func=cmd_dev)

    engine = sub.add_parser("engine", help="run the engine (settings from WOJAK_ENGINE_*, WOJAK_STORE, WOJAK_VENUE)")
    engine.add_argument("-v", "--verbose", action="store_true")
    engine.set_defaults(func=cmd_engine)
    engine_sub = engine.add_subparsers(dest="engine_command")
    ping = engine_sub.add_parser("ping", help="check that an engine answers on its socket (liveness)")
    ping.add_argument("--socket", help="PATH or ipc://PATH (default: try WOJAK_ENGINE_SOCKET, a `wojak dev` in --data-dir, the default path)")
    ping.add_argument("--data-dir", default=".wojak", help="where to look for a running `wojak dev` (default ./.wojak)")
    ping.add_argument("--timeout", type=float, default=2.0)
    ping.set_defaults(func=cmd_engine_ping)

    sidecar = sub.add_parser("sidecar", help="run a source sidecar")
    sidecar_sub = sidecar.add_subparsers(dest="source", required=True)
    http = sidecar_sub.add_parser("http", help="HTTP intake (settings from WOJAK_SIDECAR_*, WOJAK_API_KEYS)")
    http.add_argument("-v", "--verbose", action="store_true")
    http.set_defaults(func=cmd_sidecar_http)
    rabbitmq = sidecar_sub.add_parser("rabbitmq", help="RabbitMQ consumer (settings from WOJAK_SIDECAR_RABBITMQ_*)")
    rabbitmq.add_argument("-v", "--verbose", action="store_true")
    rabbitmq.set_defaults(func=cmd_sidecar_rabbitmq)

    sandbox = sub.add_parser("sandbox", help="the sandbox broker (an AWS Lambda handler)")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    package = sandbox_sub.add_parser("package", help="build the deployable Lambda zip (deterministic)")
    package.add_argument("--output", default="dist/wojak-sandbox.zip", help="default dist/wojak-sandbox.zip")
    package.set_defaults(func=cmd_sandbox_package)

    for name in ("orders", "trades"):
        report = sub.add_parser(name, help=f"list recent {name} from the store")
        report.add_argument("--json", action="store_true", help="print JSON instead of a table")
        report.add_argument("--limit", type=int, default=50, help="newest first, at most this many (default 50)")
        report.add_argument("--store", help="store URL (default: WOJAK_STORE, else the --data-dir SQLite file)")
        report.add_argument("--data-dir", default=".wojak")
        report.add_argument("--account", help="only this account")
        report.set_defaults(func=lambda a, kind=name: _report(a, kind))
    accounts = sub.add_parser("accounts", help="stored account trading states: list, halt, reduce, resume")
    accounts.add_argument("action", nargs="?", choices=["list", "halt", "reduce", "resume"], default="list")
    accounts.add_argument("account", nargs="?")
    accounts.add_argument("--reason", help="recorded with the change (in the account list and the audit log)")
    accounts.add_argument("--json", action="store_true")
    accounts.add_argument("--store", help="store URL (default: WOJAK_STORE, else the --data-dir SQLite file)")
    accounts.add_argument("--data-dir", default=".wojak")
    accounts.set_defaults(func=cmd_accounts)

    audit = sub.add_parser("audit", help="the store's append-only audit log, newest first")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--json", action="store_true", help="print JSON instead of a table")
    audit.add_argument("--store", help="store URL (default: WOJAK_STORE, else the --data-dir SQLite file)")
    audit.add_argument("--data-dir", default=".wojak")
    audit.set_defaults(func=cmd_audit)

    keys = sub.add_parser("keys", help="API keys for the sidecars")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="make a key: print it once, and the keys-file entry to paste")
    new.add_argument("--name", required=True, help="the principal's name (who the audit log says acted)")
    new.add_argument("--accounts", nargs="+", required=True, metavar="A", help="account names or patterns (desk-*)")
    new.add_argument("--scopes", nargs="+", required=True, metavar="S", help="what the key may do")
    new.add_argument("--json", action="store_true", help="print {key, entry} as JSON instead")
    new.set_defaults(func=cmd_keys_new)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "accounts" and args.action != "list" and not args.account:
        parser.error(f"wojak accounts {args.action} needs an ACCOUNT")
    if not hasattr(args, "account"):
        args.account = None
    return int(args.func(args) or 0)
