"""The engine image's command, ``wojak-engine``: run the engine, ping it, read and change the
store (``orders``, ``trades``, ``accounts``, ``audit``) and build the sandbox Lambda package.

The umbrella ``wojak`` command offers the same commands (``wojak engine``, ``wojak engine
ping``, ``wojak orders``, ...). Nothing here imports a sidecar or the HTTP stack: the engine
image has neither."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from wojak.engine.protocol.runtime import configure_logging, fail, run_command
from wojak.errors import WojakError


def cmd_engine(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from wojak.engine.app import EngineSettings, main

    configure_logging(args.verbose)
    try:
        config = EngineSettings().to_config()
        main(config)
    except ValidationError as exc:
        return fail(f"engine settings: {exc}")
    except WojakError as exc:  # a setting it cannot use, another engine on the socket, ...: one line
        return fail(str(exc))
    return 0


async def ping(socket_path: str, deadline: float) -> dict[str, Any]:
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
    found.append((dev_socket_path(data_dir), f"wojak dev in {args.data_dir}"))
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
        if not args.socket and not is_socket(path):
            tried.append(f"ipc://{path} ({origin}): no socket there")
            continue
        reply = asyncio.run(ping(str(path), args.timeout))
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


def dev_socket_path(data_dir: Path) -> Path:
    path = data_dir / "run" / "engine.sock"
    if len(str(path)) <= 100:  # AF_UNIX paths are limited to 107 bytes
        return path
    from wojak.engine.protocol import default_socket_path

    digest = hashlib.blake2b(str(data_dir).encode(), digest_size=4).hexdigest()
    return Path(default_socket_path()).parent / f"dev-{digest}" / "engine.sock"


def is_socket(path: Path) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


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
        fail(f"no store at {url}: run `wojak dev` first or pass --store / --data-dir")
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
    cols: tuple[str, ...]
    if kind == "orders":
        cols = (
            "created_at",
            "client_order_id",
            "account",
            "symbol",
            "side",
            "quantity",
            "order_type",
            "limit_price",
            "state",
            "filled_quantity",
            "average_price",
            "reason",
        )
    else:
        cols = ("executed_at", "trade_id", "account", "symbol", "side", "quantity", "price", "venue_order_id")
    print(_table(rows, cols))
    return 0


def cmd_sandbox_package(args: argparse.Namespace) -> int:
    from wojak.engine.venue.package import build_package

    try:
        pkg = build_package(args.output)
    except (WojakError, OSError) as exc:
        return fail(f"sandbox package: {exc}")
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
        if text == "" or any(c.isspace() or c in '"=' for c in text):
            text = json.dumps(text)
        parts.append(f"{k}={text}")
    return " ".join(parts)


def cmd_audit(args: argparse.Namespace) -> int:
    """The store's append-only audit log, newest first."""
    if args.limit < 1:
        return fail("--limit must be at least 1")
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
            "kind": r.get("kind"),
            "actor": r.get("actor"),
            "subject": r.get("subject"),
            "detail": _detail(r.get("detail")),
        }
        for r in rows
    ]
    print(_table(table, ("time", "kind", "actor", "subject", "detail")))
    return 0


# -- parser -----------------------------------------------------------------------------


def configure_engine(parser: argparse.ArgumentParser) -> Any:
    """``wojak engine`` (run it) and ``wojak engine ping``; returns the subparsers (for more commands)."""
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.set_defaults(func=cmd_engine, extra="engine")
    engine_sub = parser.add_subparsers(dest="engine_command")
    ping = engine_sub.add_parser("ping", help="check that an engine answers on its socket (liveness)")
    ping.add_argument(
        "--socket", help="PATH or ipc://PATH (default: try WOJAK_ENGINE_SOCKET, a `wojak dev` in --data-dir, the default path)"
    )
    ping.add_argument("--data-dir", default=".wojak", help="where to look for a running `wojak dev` (default ./.wojak)")
    ping.add_argument("--timeout", type=float, default=2.0)
    ping.set_defaults(func=cmd_engine_ping)
    return engine_sub


def add_store_commands(sub: Any) -> None:
    """``sandbox package``, ``orders``, ``trades``, ``accounts``, ``audit`` on ``sub`` (subparsers);
    they need the engine's extra."""
    sandbox = sub.add_parser("sandbox", help="the sandbox broker (an AWS Lambda handler)")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    package = sandbox_sub.add_parser("package", help="build the deployable Lambda zip (deterministic)")
    package.add_argument("--output", default="dist/wojak-sandbox.zip", help="default dist/wojak-sandbox.zip")
    package.set_defaults(func=cmd_sandbox_package, extra="engine")

    for name in ("orders", "trades"):
        report = sub.add_parser(name, help=f"list recent {name} from the store")
        report.add_argument("--json", action="store_true", help="print JSON instead of a table")
        report.add_argument("--limit", type=int, default=50, help="newest first, at most this many (default 50)")
        report.add_argument("--store", help="store URL (default: WOJAK_STORE, else the --data-dir SQLite file)")
        report.add_argument("--data-dir", default=".wojak")
        report.add_argument("--account", help="only this account")
        report.set_defaults(func=lambda a, kind=name: _report(a, kind), extra="engine")
    accounts = sub.add_parser("accounts", help="stored account trading states: list, halt, reduce, resume")
    accounts.add_argument("action", nargs="?", choices=["list", "halt", "reduce", "resume"], default="list")
    accounts.add_argument("account", nargs="?")
    accounts.add_argument("--reason", help="recorded with the change (in the account list and the audit log)")
    accounts.add_argument("--json", action="store_true")
    accounts.add_argument("--store", help="store URL (default: WOJAK_STORE, else the --data-dir SQLite file)")
    accounts.add_argument("--data-dir", default=".wojak")
    accounts.set_defaults(func=cmd_accounts, extra="engine")

    audit = sub.add_parser("audit", help="the store's append-only audit log, newest first")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--json", action="store_true", help="print JSON instead of a table")
    audit.add_argument("--store", help="store URL (default: WOJAK_STORE, else the --data-dir SQLite file)")
    audit.add_argument("--data-dir", default=".wojak")
    audit.set_defaults(func=cmd_audit, extra="engine")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot say: ``accounts halt|reduce|resume`` needs an ACCOUNT."""
    if getattr(args, "func", None) is cmd_accounts and args.action != "list" and not args.account:
        parser.error(f"{parser.prog} accounts {args.action} needs an ACCOUNT")
    if not hasattr(args, "account"):
        args.account = None


def build_parser() -> argparse.ArgumentParser:
    from wojak.engine import __version__

    parser = argparse.ArgumentParser(
        prog="wojak-engine",
        description="The wojak engine: run it (no command), ping it, read and change its store, build the sandbox package.",
    )
    parser.add_argument("--version", action="version", version=f"wojak {__version__}")
    add_store_commands(configure_engine(parser))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``wojak-engine``: the engine image's entry point."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    return run_command(args.func, args, args.extra)
