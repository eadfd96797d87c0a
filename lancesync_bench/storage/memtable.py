"""The in-memory table: acknowledged records that are not yet in a Lance version.

It answers reads together with the Lance table (:mod:`lancesync_bench.storage.tier`): a
point read looks here first, a vector search scans these rows exactly (one matrix-vector
product) and merges them with the index search of the table. It follows the record rules
of :mod:`lancesync_bench.storage.schema`: per id, the record with the greatest
``(updated_at, origin)`` wins, and a winning tombstone hides the document.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["MemTable", "RecordKey"]

RecordKey = tuple[int, str]  # (updated_at, origin): the larger wins
_INITIAL_ROWS = 256


class MemTable:
    """Records of one table held in memory, with an exact vector scan over the live ones."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.batches: list[pa.Table] = []
        self._batch_newest: list[int] = []  # per batch: its greatest updated_at
        self.rows = 0
        self.bytes = 0
        self.inflight = 0  # writes queued for this table's log segment, not yet inserted
        self._winners: dict[str, int] = {}  # id -> row number of its winning record
        # Per row: its key, id, tombstone flag and (batch, index in batch).
        self._keys: list[RecordKey] = []
        self._ids: list[str] = []
        self._deleted: list[bool] = []
        self._where: list[tuple[int, int]] = []
        self._vectors = np.zeros((_INITIAL_ROWS, dim), dtype=np.float32)
        self._norms = np.zeros(_INITIAL_ROWS, dtype=np.float32)
        self._live = np.zeros(_INITIAL_ROWS, dtype=bool)
        self.max_updated_at = -1

    def __len__(self) -> int:
        return self.rows

    def insert(self, records: pa.Table) -> None:
        """Add a batch of records (the schema of :func:`~.schema.schema`)."""
        n = records.num_rows
        if n == 0:
            return
        batch = len(self.batches)
        self.batches.append(records)
        # The buffers' size (what a flush by bytes bounds): 0.6 us a one-row write, where
        # ``nbytes``, which sizes only the referenced ranges, took 13 us (timeit).
        self.bytes += records.get_total_buffer_size()
        self._grow(self.rows + n)
        vectors = records.column("vector").combine_chunks().values.to_numpy(zero_copy_only=False)
        block = vectors.reshape(n, self.dim)
        start = self.rows
        self._vectors[start : start + n] = block
        self._norms[start : start + n] = np.einsum("ij,ij->i", block, block)
        ids = records.column("id").to_pylist()
        stamps = records.column("updated_at").to_pylist()
        origins = records.column("origin").to_pylist()
        deleted = records.column("deleted").to_pylist()
        winners, keys, live = self._winners, self._keys, self._live
        for i, doc_id in enumerate(ids):
            row = start + i
            key = (stamps[i], origins[i])
            keys.append(key)
            previous = winners.get(doc_id)
            if previous is None or key >= keys[previous]:
                if previous is not None:
                    live[previous] = False
                winners[doc_id] = row
                live[row] = not deleted[i]
        self._ids += ids
        self._deleted += deleted
        self._where += [(batch, i) for i in range(n)]
        newest = max(stamps)
        self._batch_newest.append(newest)
        self.max_updated_at = max(self.max_updated_at, newest)
        self.rows += n

    def _grow(self, needed: int) -> None:
        capacity = len(self._live)
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        vectors = np.zeros((capacity, self.dim), dtype=np.float32)
        vectors[: self.rows] = self._vectors[: self.rows]
        self._vectors = vectors
        self._norms = np.resize(self._norms, capacity)
        live = np.zeros(capacity, dtype=bool)
        live[: self.rows] = self._live[: self.rows]
        self._live = live

    def key_of(self, doc_id: str) -> tuple[RecordKey, bool] | None:
        """The winning record's key and whether it is a tombstone, or None when absent."""
        row = self._winners.get(doc_id)
        if row is None:
            return None
        return self._keys[row], self._deleted[row]

    def record(self, doc_id: str) -> dict[str, object] | None:
        """The winning record of ``doc_id`` as a row dict (tombstones included), or None."""
        row = self._winners.get(doc_id)
        if row is None:
            return None
        batch, index = self._where[row]
        rows: list[dict[str, object]] = self.batches[batch].slice(index, 1).to_pylist()
        return rows[0]

    def nearest(self, query: np.ndarray, k: int) -> list[tuple[float, str]]:
        """Up to ``k`` live records nearest to ``query``: (squared L2 distance, id).

        Squared L2, as LanceDB reports ``_distance`` for its default metric.
        """
        live = np.flatnonzero(self._live[: self.rows])
        if live.size == 0:
            return []
        q = query.astype(np.float32, copy=False)
        dist = self._norms[live] - 2.0 * (self._vectors[live] @ q) + float(q @ q)
        np.maximum(dist, 0.0, out=dist)
        top = np.argpartition(dist, k)[:k] if live.size > k else np.arange(live.size)
        top = top[np.argsort(dist[top], kind="stable")]
        return [(float(dist[t]), self._ids[int(live[t])]) for t in top]

    def records_after(self, floor: int, origin: str) -> pa.Table | None:
        """``origin``'s records newer than ``floor`` (None: no batch holds a record newer
        than ``floor``). Only the batches that do are read: with 1,000 one-document batches
        held, a sync finds its one new document in 0.09 ms, where concatenating them all
        took 1.26 ms (timeit)."""
        newer = [
            b for b, newest in zip(self.batches, self._batch_newest, strict=True) if newest > floor
        ]
        if not newer:
            return None
        records = pa.concat_tables(newer)
        keep = pc.and_(
            pc.equal(records.column("origin"), origin),
            pc.greater(records.column("updated_at"), floor),
        )
        return records.filter(keep)

    def to_table(self) -> pa.Table:
        """Every record held, in arrival order (what one flush commits)."""
        return pa.concat_tables(self.batches) if self.batches else pa.table({})
