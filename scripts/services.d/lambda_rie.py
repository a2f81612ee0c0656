#!/usr/bin/env python3
"""A small stand-in for aws-lambda-rie (the Lambda Runtime Interface Emulator), stdlib only.

Used by scripts/services when the real aws-lambda-rie binary cannot be had (it is built from
the Go module proxy, which may not serve it). Same command line shape:

    lambda_rie.py --runtime-interface-emulator-address 127.0.0.1:9000 \
        [--runtime-api-address 127.0.0.1:9001] CMD ARGS...

It serves
  * the invoke API clients use: POST /2015-03-31/functions/<name>/invocations
    (boto3 ``lambda.invoke(FunctionName="function")`` with ``endpoint_url``), and
  * the Lambda Runtime API the runtime polls (AWS_LAMBDA_RUNTIME_API):
    GET  /2018-06-01/runtime/invocation/next
    POST /2018-06-01/runtime/invocation/<id>/response | /error
    POST /2018-06-01/runtime/init/error
and runs CMD (e.g. ``python -m awslambdaric module.handler``) as the runtime, restarting it
if it exits. One invocation at a time, like one Lambda execution environment.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FUNCTION_ARN = "arn:aws:lambda:us-east-1:012345678912:function:function"


class Invocation:
    def __init__(self, body: bytes, timeout: float):
        self.id = str(uuid.uuid4())
        self.body = body
        self.deadline_ms = int((time.time() + timeout) * 1000)
        self.done = threading.Event()
        self.result: bytes = b""
        self.error_type: str | None = None


class Emulator:
    def __init__(self, cmd: list[str], runtime_addr: tuple[str, int], timeout: float):
        self.cmd = cmd
        self.runtime_addr = runtime_addr
        self.timeout = timeout
        self.pending: "queue.Queue[Invocation]" = queue.Queue()
        self.inflight: dict[str, Invocation] = {}
        self.invoke_lock = threading.Lock()  # one invocation at a time
        self.proc: subprocess.Popen | None = None
        self.proc_lock = threading.Lock()
        self.init_error: bytes | None = None

    def log(self, msg: str) -> None:
        print(f"{time.strftime('%d %b %Y %H:%M:%S')} [lambda-rie] {msg}", file=sys.stderr, flush=True)

    def ensure_runtime(self) -> None:
        with self.proc_lock:
            if self.proc is not None and self.proc.poll() is None:
                return
            if self.proc is not None:
                self.log(f"runtime exited with {self.proc.returncode}; starting it again")
            env = dict(os.environ)
            env["AWS_LAMBDA_RUNTIME_API"] = f"{self.runtime_addr[0]}:{self.runtime_addr[1]}"
            env.setdefault("AWS_LAMBDA_FUNCTION_NAME", "function")
            env.setdefault("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            env.setdefault("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
            env.setdefault("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/function")
            env.setdefault("AWS_LAMBDA_LOG_STREAM_NAME", "$LATEST")
            env.setdefault("AWS_REGION", "us-east-1")
            env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
            if len(self.cmd) > 0:
                env.setdefault("_HANDLER", self.cmd[-1])
            self.init_error = None
            self.log(f"exec {' '.join(self.cmd)}")
            self.proc = subprocess.Popen(self.cmd, env=env, stdin=subprocess.DEVNULL)

    def invoke(self, body: bytes) -> Invocation:
        with self.invoke_lock:
            inv = Invocation(body, self.timeout)
            self.inflight[inv.id] = inv
            self.ensure_runtime()
            self.log(f"START RequestId: {inv.id}")
            self.pending.put(inv)
            deadline = time.monotonic() + self.timeout
            while not inv.done.wait(0.2):
                proc = self.proc
                if self.init_error is not None or (proc is not None and proc.poll() is not None):
                    # the runtime died or failed to init before answering
                    inv.error_type = "Runtime"
                    inv.result = self.init_error or json.dumps({
                        "errorType": "Runtime.ExitError",
                        "errorMessage": f"RequestId: {inv.id} Error: Runtime exited with "
                                        f"{proc.returncode if proc else '?'}"}).encode()
                    self._drain()
                    break
                if time.monotonic() > deadline:
                    inv.error_type = "Unhandled"
                    inv.result = json.dumps({"errorType": "Sandbox.Timedout",
                                             "errorMessage": f"Task timed out after {self.timeout:.2f} seconds"}).encode()
                    self._restart_runtime()
                    break
            self.inflight.pop(inv.id, None)
            self.log(f"END RequestId: {inv.id}")
            return inv

    def _drain(self) -> None:
        while True:
            try:
                self.pending.get_nowait()
            except queue.Empty:
                return

    def _restart_runtime(self) -> None:
        self._drain()
        with self.proc_lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def make_handler(emu: Emulator, kind: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: the emulator logs START/END itself
            pass

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _send(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            if "Content-Type" not in (headers or {}):
                self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        # ---- invoke API (clients)
        def do_POST(self):
            path = self.path.split("?")[0]
            body = self._body()
            if kind == "invoke":
                parts = path.strip("/").split("/")
                if len(parts) == 4 and parts[0] == "2015-03-31" and parts[1] == "functions" \
                        and parts[3] == "invocations":
                    inv = emu.invoke(body or b"{}")
                    headers = {"X-Amz-Executed-Version": "$LATEST", "X-Amzn-Requestid": inv.id}
                    code = 200
                    if inv.error_type == "Runtime":  # init failure / runtime exit: like aws-lambda-rie
                        code = 502
                    elif inv.error_type:
                        headers["X-Amz-Function-Error"] = inv.error_type
                    self._send(code, inv.result, headers)
                    return
                self._send(404, b'{"message":"not found"}')
                return
            # ---- runtime API
            if path == "/2018-06-01/runtime/init/error":
                emu.init_error = body or b'{"errorType":"Runtime.Unknown"}'
                emu.log(f"init error: {emu.init_error[:500]!r}")
                self._send(202, b'{"status":"OK"}')
                return
            parts = path.strip("/").split("/")
            if len(parts) == 5 and parts[:3] == ["2018-06-01", "runtime", "invocation"]:
                inv = emu.inflight.get(parts[3])
                if inv is None:
                    self._send(400, b'{"errorType":"InvalidRequestID"}')
                    return
                inv.result = body
                if parts[4] == "error":
                    inv.error_type = "Unhandled"
                self._send(202, b'{"status":"OK"}')
                inv.done.set()
                return
            self._send(404, b'{"message":"not found"}')

        def do_GET(self):
            path = self.path.split("?")[0]
            if kind == "runtime" and path == "/2018-06-01/runtime/invocation/next":
                inv = emu.pending.get()
                self._send(200, inv.body, {
                    "Lambda-Runtime-Aws-Request-Id": inv.id,
                    "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
                })
                return
            self._send(404, b'{"message":"not found"}')

    return Handler


def parse_addr(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime-interface-emulator-address", default="127.0.0.1:9000")
    ap.add_argument("--runtime-api-address", default="127.0.0.1:0")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if not args.cmd:
        ap.error("the runtime command is missing")
    timeout = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "300"))
    runtime_server = ThreadingHTTPServer(parse_addr(args.runtime_api_address), make_handler(None, "runtime"))
    emu = Emulator(args.cmd, runtime_server.server_address[:2], timeout)
    runtime_server.RequestHandlerClass = make_handler(emu, "runtime")
    invoke_server = ThreadingHTTPServer(parse_addr(args.runtime_interface_emulator_address),
                                        make_handler(emu, "invoke"))
    runtime_server.daemon_threads = invoke_server.daemon_threads = True
    threading.Thread(target=runtime_server.serve_forever, daemon=True).start()
    emu.log(f"runtime API on {runtime_server.server_address[0]}:{runtime_server.server_address[1]}, "
            f"invoke API on {invoke_server.server_address[0]}:{invoke_server.server_address[1]}")
    try:
        invoke_server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if emu.proc is not None and emu.proc.poll() is None:
            emu.proc.terminate()
    return 0


if __name__ == "__main__":
    import signal

    def _terminate(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
