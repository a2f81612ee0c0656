"""A broker or emulator of a test's own: `scripts/services up <name>` on a free port with its own
state directory (the shared services are never touched), stopped with ``kill -STOP`` for an
outage and ``kill -CONT`` after it (or `down` and `up` again, for a broker that keeps its data on
disk, as Kafka does), and `scripts/services down <name>` at the end.

The AWS emulator (moto) and the Pub/Sub emulator keep their state in memory only: a process
stopped and started again would come back empty, with every message gone, which says nothing
about the sidecar. A stopped process keeps its state, and its clients see what a broker that
went away shows them: every call hangs until its deadline, no message arrives, nothing is taken.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from wojak.sidecars.testing.contract import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "services"


class OwnService:
    def __init__(self, name: str, tmp_path: Path, *, more_ports: tuple[str, ...] = ()) -> None:
        """``more_ports``: the service's other ports, each on a free one of its own (Kafka's
        ``CONTROLLER``: ``WOJAK_SERVICES_KAFKA_CONTROLLER_PORT``)."""
        self.name = name
        self.port = free_port()
        self.state = tmp_path / "services"
        self.env = {**os.environ, "WOJAK_SERVICES_STATE": str(self.state), f"WOJAK_SERVICES_{name.upper()}_PORT": str(self.port)}
        for port in more_ports:
            self.env[f"WOJAK_SERVICES_{name.upper()}_{port}_PORT"] = str(free_port())
        self.exports: dict[str, str] = {}

    def _script(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args, self.name],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )

    def up(self) -> OwnService:
        proc = self._script("up")
        # the service on our port answered (Couchbase names it in its progress: "REST 127.0.0.1:PORT")
        assert proc.returncode == 0 and f"127.0.0.1:{self.port}" in proc.stdout + proc.stderr, proc.stderr[-3000:]
        for line in proc.stdout.splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line[len("export ") :].partition("=")
                self.exports[key] = value.strip("'\"")
        return self

    def _group(self) -> int:
        record = json.loads((self.state / self.name / "pid.json").read_text())
        return int(record["pgid"])

    def stop(self) -> None:
        os.killpg(self._group(), signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self._group(), signal.SIGCONT)

    def down(self) -> None:
        try:
            self.resume()
        except (OSError, ValueError, KeyError):
            pass
        proc = self._script("down")
        assert proc.returncode == 0, proc.stderr[-3000:]
