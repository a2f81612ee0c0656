"""The ``wojak`` command: ``dev``, ``engine``, ``engine ping``, ``sidecar http``, ``orders``, ``trades``."""

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
    from wojak.sidecars._core.client import EngineClient

    async with EngineClient(socket_path) as client:
        return await client.request(MessageType.PING, {}, deadline)


def cmd_engine_ping(args: argparse.Namespace) -> int:
    from wojak.engine.protocol import default_socket_path

    path = args.socket or os.environ.get("WOJAK_ENGINE_SOCKET") or default_socket_path()
    reply = asyncio.run(_ping(path, args.timeout))
    if reply.get("verdict") == "ok":
        print(f"engine ok: pid {reply['pid']}, version {reply['version']}, ipc://{path}")
        return 0
    print(f"engine not answering on ipc://{path} ({reply.get('reason')})", file=sys.stderr)
    return 1


# -- sidecars ---------------------------------------------------------------------------


def cmd_sidecar_http(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from wojak._runtime import run
    from wojak.sidecars.http import HttpSidecarSettings, serve

    _logging(args.verbose)
    try:
        config = HttpSidecarSettings().to_config()
    except (ValidationError, ValueError) as exc:
        return _fail(f"HTTP sidecar settings: {exc}")
    log.info("HTTP sidecar on http://%s:%d, engine at ipc://%s", config.host, config.port, config.engine_socket)
    run(serve(config))
    return 0


def cmd_sidecar_rabbitmq(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        from wojak._runtime import run
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


def _dev_key(data_dir: Path) -> tuple[str, bool]:
    if os.environ.get("WOJAK_API_KEYS"):
        return os.environ["WOJAK_API_KEYS"].split(",")[0].strip(), False
    key_file = data_dir / "api-key"
    if key_file.exists():
        return key_file.read_text().strip(), False
    key = "wjk_" + secrets.token_urlsafe(24)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key, True


def _wait_for(check: Any, what: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s")


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes], name: str, grace: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            print(f"  {name} did not stop within {grace:.0f}s; killing it", file=sys.stderr)
            proc.kill()
            proc.wait()


def cmd_dev(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = _dev_socket(data_dir)
    key, generated = _dev_key(data_dir)
    env = dict(os.environ)
    env.update(
        WOJAK_ENGINE_SOCKET=str(socket_path),
        WOJAK_STORE=env.get("WOJAK_STORE", f"sqlite:///{data_dir / 'wojak.sqlite'}"),
        WOJAK_VENUE=env.get("WOJAK_VENUE", f"sandbox:?ledger={data_dir / 'sandbox.sqlite'}"),
        WOJAK_API_KEYS=env.get("WOJAK_API_KEYS") or key,
        WOJAK_SIDECAR_PORT=str(args.port),
        WOJAK_SIDECAR_HOST=args.host,
    )
    python = [sys.executable, "-m", "wojak"]
    print(f"[1/3] starting the engine (store {env['WOJAK_STORE']}, socket ipc://{socket_path})", flush=True)
    engine = subprocess.Popen([*python, "engine"], env=env)
    sidecar: subprocess.Popen[bytes] | None = None
    stopping = False

    def _terminate(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _terminate)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        _wait_for(lambda: asyncio.run(_ping(str(socket_path), 0.3)).get("verdict") == "ok", "engine", engine)
        print(f"[2/3] starting the HTTP sidecar on http://{args.host}:{args.port}", flush=True)
        sidecar = subprocess.Popen([*python, "sidecar", "http"], env=env)
        _wait_for(lambda: _http_ok(f"http://{args.host}:{args.port}/readyz"), "HTTP sidecar", sidecar)
        url = f"http://{args.host}:{args.port}"
        print("[3/3] ready\n", flush=True)
        print(f"  API:      {url}/v1/orders   (docs: {url}/docs, metrics: {url}/metrics)")
        print(f"  API key:  {key}" + ("   (generated, saved in " + str(data_dir / "api-key") + ")" if generated else ""))
        print(f"  data:     {data_dir}\n")
        print("  Try it:")
        print(f"    curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\")
        print(f"      -d '{{\"symbol\":\"NIFTY-FUT\",\"bid\":\"24000\",\"ask\":\"24001\",\"last\":\"24000.5\"}}' {url}/v1/ticks")
        print(f"    curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\")
        print("      -d '{\"client_order_id\":\"first-1\",\"account\":\"desk-1\",\"symbol\":\"NIFTY-FUT\",\"side\":\"buy\",")
        print(f"           \"quantity\":\"50\",\"order_type\":\"limit\",\"limit_price\":\"24001\"}}' {url}/v1/orders\n")
        print("  Ctrl-C stops everything; data stays in the data directory.", flush=True)
        while not stopping:
            for name, proc in (("engine", engine), ("HTTP sidecar", sidecar)):
                if proc.poll() is not None:
                    print(f"wojak: {name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                    stopping = True
            time.sleep(0.2)
        return 0 if engine.returncode is None and (sidecar is None or sidecar.returncode is None) else 1
    except RuntimeError as exc:
        print(f"wojak: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping: HTTP sidecar first (drains requests), then the engine", flush=True)
        if sidecar is not None:
            _stop(sidecar, "HTTP sidecar", 30)
        _stop(engine, "engine", 30)
        print("stopped", flush=True)


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
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    for r in rows:
        lines.append("  ".join(str(r.get(c) if r.get(c) is not None else "").ljust(w) for c, w in zip(columns, widths)))
    return "\n".join(lines)


def _report(args: argparse.Namespace, kind: str) -> int:
    store = _open_existing_store(args)
    if store is None:
        return 2

    async def fetch() -> list[dict[str, Any]]:
        try:
            if kind == "orders":
                return [o.to_wire() for o in await store.list_orders(args.limit, args.account)]
            return [t.to_wire() for t in await store.list_trades(args.limit)]
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


def cmd_accounts(args: argparse.Namespace) -> int:
    """List accounts the store holds in a trading state (e.g. HALTED after a daily-loss breach),
    or set / clear one. The engine reads the stored state on every order: no restart."""
    store = _open_existing_store(args)
    if store is None:
        return 2

    async def act() -> list[dict[str, Any]]:
        try:
            if args.action == "resume":
                await store.set_account_state(args.account, None, "")
            elif args.action in ("halt", "reduce"):
                state = "HALTED" if args.action == "halt" else "REDUCING"
                await store.set_account_state(args.account, state, args.reason or f"set by `wojak accounts {args.action}`")
            return await store.list_account_states()
        finally:
            await store.close()

    rows = asyncio.run(act())
    if args.action == "resume":
        print(f"{args.account}: stored trading state cleared; the risk configuration's state applies again", file=sys.stderr)
    elif args.action in ("halt", "reduce"):
        print(f"{args.account}: stored as {'HALTED' if args.action == 'halt' else 'REDUCING'}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        r["at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["at"])) if r.get("at") else ""
    print(_table(rows, ("account", "state", "reason", "at")))
    return 0


# -- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wojak", description="A small, fast, fail-closed trade-execution engine.")
    parser.add_argument("--version", action="version", version=f"wojak {__import__('wojak').__version__}")
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
    ping.add_argument("--socket", help="default: WOJAK_ENGINE_SOCKET")
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
        report.add_argument("--limit", type=int, default=50)
        report.add_argument("--store", help="store URL (default: WOJAK_STORE, else the --data-dir SQLite file)")
        report.add_argument("--data-dir", default=".wojak")
        if name == "orders":
            report.add_argument("--account")
        report.set_defaults(func=lambda a, kind=name: _report(a, kind))
    accounts = sub.add_parser("accounts", help="stored account trading states: list, halt, reduce, resume")
    accounts.add_argument("action", nargs="?", choices=["list", "halt", "reduce", "resume"], default="list")
    accounts.add_argument("account", nargs="?")
    accounts.add_argument("--reason", help="recorded with halt / reduce")
    accounts.add_argument("--json", action="store_true")
    accounts.add_argument("--store", help="store URL (default: WOJAK_STORE, else the --data-dir SQLite file)")
    accounts.add_argument("--data-dir", default=".wojak")
    accounts.set_defaults(func=cmd_accounts)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "accounts" and args.action != "list" and not args.account:
        parser.error(f"wojak accounts {args.action} needs an ACCOUNT")
    if not hasattr(args, "account"):
        args.account = None
    return int(args.func(args) or 0)
