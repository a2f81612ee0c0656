"""Hot reload of the risk config file (e.g. a mounted ConfigMap): poll, validate, swap.

A file that fails to load is rejected with the loader's error (naming each bad setting)
and the limits in force stay as they are; both outcomes are logged and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Callable

from wojak.engine.risk._checks import RiskEngine
from wojak.engine.risk._config import RiskConfigError, load_risk_config

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


class RiskConfigWatcher:
    def __init__(
        self,
        path: str | Path,
        apply: Callable[[RiskEngine], None],
        metrics: Any = None,
        interval: float = 1.0,
        audit: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.path, self.apply, self.metrics, self.interval = Path(path), apply, metrics, interval
        self.audit = audit  # (kind, detail) for each load: the file's sha256, accepted or refused
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows the ConfigMap's ..data symlink swap
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def check(self) -> bool | None:
        """Reload if the file changed: True applied, False rejected, None unchanged."""
        stamp = self._stamp()
        if stamp == self._seen:
            return None
        self._seen = stamp
        digest = file_sha256(self.path)
        try:
            engine = RiskEngine(load_risk_config(self.path))
        except RiskConfigError as exc:
            log.error("risk config reload REJECTED, the previous limits stay in force: %s", exc)
            if self.metrics is not None:
                self.metrics.risk_reloads.labels("rejected").inc()
            if self.audit is not None:
                self.audit("risk_config_refused", {"path": str(self.path), "sha256": digest, "error": str(exc)[:2000]})
            return False
        self.apply(engine)
        if self.audit is not None:
            self.audit(
                "risk_config_loaded",
                {"path": str(self.path), "sha256": digest, "trading_state": engine.config.trading_state.value},
            )
        log.warning("risk config reloaded from %s (trading_state=%s)", self.path, engine.config.trading_state.value)
        if self.metrics is not None:
            self.metrics.risk_reloads.labels("applied").inc()
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass
            if not stop.is_set():
                self.check()
