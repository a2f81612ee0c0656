"""``rows_by_pairs``: the rows of a table whose two key columns equal one of a batch of pairs,
each such row once, however many statements the batch takes (the store's and the sandbox
ledger's batched reads by key)."""

from __future__ import annotations

import sqlite3

import pytest

from wojak.engine._sqlite_keys import _PAIRS_PER_STATEMENT, rows_by_pairs


@pytest.fixture
def db():
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE orders (account TEXT, coid TEXT, qty INTEGER, PRIMARY KEY (account, coid))")
    db.executemany("INSERT INTO orders VALUES (?,?,?)", [(f"a{i % 7}", f"c{i}", i) for i in range(2000)])
    yield db
    db.close()


@pytest.mark.parametrize("size", [1, 2, _PAIRS_PER_STATEMENT, _PAIRS_PER_STATEMENT + 1, 1000])
def test_each_row_a_batch_names_is_read_once_and_no_other(db, size):
    wanted = [(f"a{i % 7}", f"c{i}") for i in range(0, 2 * size, 2)]  # every other row
    missing = [("a0", "nobody"), ("zz", "c1")]  # keys that name no row
    rows = list(rows_by_pairs(db, "t.account, t.coid, t.qty", "orders", ("account", "coid"), wanted + missing))
    assert sorted(rows) == sorted((a, c, int(c[1:])) for a, c in wanted), "each named row exactly once"


def test_no_pairs_read_nothing_and_columns_may_be_named_bare(db):
    assert list(rows_by_pairs(db, "qty", "orders", ("account", "coid"), [])) == []
    assert list(rows_by_pairs(db, "qty", "orders", ("account", "coid"), iter([("a3", "c3")]))) == [(3,)]
