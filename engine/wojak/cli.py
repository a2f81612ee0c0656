"""The ``wojak`` command for a workstation: ``dev`` (the engine and the HTTP sidecar as two
supervised processes, no configuration) and every command of the two images: the engine's
(``engine``, ``engine ping``, ``orders``, ``trades``, ``accounts``, ``audit``, ``sandbox package``;
:mod:`wojak.engine.cli`, also ``wojak-engine``) and the sidecars' (``sidecar http|rabbitmq``,
``keys new``; :mod:`wojak.sidecars.cli`, also ``wojak-sidecar``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from wojak.engine import cli as engine_cli
from wojak.engine.cli import dev_socket_path, is_socket, ping
from wojak.engine.protocol.runtime import fail, run_command
from wojak.sidecars import cli as sidecar_cli

# -- dev --------------------------------------------------------------------------------


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
    from wojak.engine.risk import demo_risk_config_path

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


def _engine_pid(socket_path: Path, deadline: float = 0.3) -> int | None:
    """The pid of the engine answering on ``socket_path``, or None."""
    if not is_socket(socket_path):
        return None
    reply = asyncio.run(ping(str(socket_path), deadline))
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
                file=sys.stderr,
                flush=True,
            )
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
    import wojak.engine.app  # noqa: F401  the two processes it runs: a base install lacks their extras,
    import wojak.sidecars.http  # noqa: F401  which main() names (`pip install 'wojak[dev]'`) before anything starts

    data_dir = Path(args.data_dir).resolve()
    if not 0 < args.port < 65536:
        return fail(f"--port {args.port}: use a port from 1 to 65535")
    problem = _port_problem(args.host, args.port)
    if problem:
        return fail(f"{problem}: stop what holds it, or choose another port with `wojak dev --port {args.port + 1}`")
    try:
        _private_dir(data_dir)
        socket_path = dev_socket_path(data_dir)
        running = _engine_pid(socket_path)
        if running:
            return fail(
                f"an engine (pid {running}) already answers on ipc://{socket_path}: is `wojak dev` already running "
                f"with {data_dir}? Stop it first, or use another --data-dir"
            )
        keys_file = os.environ.get("WOJAK_API_KEYS_FILE", "").strip()
        key, generated = ("", False) if keys_file else _dev_key(data_dir)
    except OSError as exc:
        return fail(f"data directory {data_dir}: {exc}")
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
        print(f'      -d \'{{"symbol":"NIFTY-FUT","bid":"24000","ask":"24001","last":"24000.5"}}\' {url}/v1/ticks')
        print(f"    curl -s -H \"Authorization: Bearer {key}\" -H 'Content-Type: application/json' \\")
        print('      -d \'{"client_order_id":"first-1","account":"desk-1","symbol":"NIFTY-FUT","side":"buy",')
        print(f'           "quantity":"50","order_type":"limit","limit_price":"24001"}}\' {url}/v1/orders\n')
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


# -- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from wojak.engine import __version__

    parser = argparse.ArgumentParser(prog="wojak", description="A small, fast, fail-closed trade-execution engine.")
    parser.add_argument("--version", action="version", version=f"wojak {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the engine and the HTTP sidecar locally, with no configuration")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--data-dir", default=".wojak", help="store, sandbox ledger, API key and socket (default ./.wojak)")
    dev.set_defaults(func=cmd_dev, extra="dev")

    engine_cli.configure_engine(
        sub.add_parser("engine", help="run the engine (settings from WOJAK_ENGINE_*, WOJAK_STORE, WOJAK_VENUE)")
    )
    sidecar = sub.add_parser("sidecar", help="run a source sidecar")
    sidecar_cli.configure_sidecar(sidecar.add_subparsers(dest="source", required=True))
    engine_cli.add_store_commands(sub)
    sidecar_cli.add_keys_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    engine_cli.check_args(parser, args)
    return run_command(args.func, args, args.extra)
