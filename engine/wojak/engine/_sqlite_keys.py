"""Rows of an SQLite table by a batch of two-column keys, read through the key's index.

``WHERE (a, b) IN (VALUES (?,?), ...)`` reads the whole table on SQLite 3.40: the planner does
not use a composite primary key for a row-value ``IN``, so every batch cost a scan of every
order ever stored. A ``CROSS JOIN`` driven by the ``VALUES`` list makes it one index search per
key. Shared by the store and the sandbox venue's ledger.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Iterable, Iterator

_PAIRS_PER_STATEMENT = 450  # 900 bound values: under every SQLite build's variable limit


def rows_by_pairs(
    db: sqlite3.Connection, columns: str, table: str, key: tuple[str, str], pairs: Iterable[tuple[str, str]]
) -> Iterator[tuple[Any, ...]]:
    """``SELECT columns FROM table`` for the rows whose ``key`` columns equal one of ``pairs``.
    ``columns`` may name the table's columns bare or as ``t.<column>``."""
    pairs = list(pairs)
    for i in range(0, len(pairs), _PAIRS_PER_STATEMENT):
        part = pairs[i : i + _PAIRS_PER_STATEMENT]
        yield from db.execute(
            f"SELECT {columns} FROM (VALUES {','.join(['(?,?)'] * len(part))}) AS k"
            f" CROSS JOIN {table} AS t ON t.{key[0]} = k.column1 AND t.{key[1]} = k.column2",
            [v for pair in part for v in pair],
        )
