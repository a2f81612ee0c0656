"""How much work SQLite does for a call: its virtual machine's instructions, counted with a
progress handler. A count, not a time, so a test can compare two table sizes without timing."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Iterator


@contextlib.contextmanager
def sqlite_steps(db: sqlite3.Connection, every: int = 100) -> Iterator[list[int]]:
    """``with sqlite_steps(db) as steps: ...``; then ``steps[0]`` is about the instructions run."""
    steps = [0]

    def tick() -> int:
        steps[0] += every
        return 0  # 0: go on

    db.set_progress_handler(tick, every)
    try:
        yield steps
    finally:
        db.set_progress_handler(None, every)
