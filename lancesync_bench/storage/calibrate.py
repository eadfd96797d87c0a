"""Search parameters for a table's vector index that reach a recall target on its own data.

Recall is a property of the data and the search parameters together: IVF_FLAT with sqrt(n)
partitions and 20 probes finds 100% of the true top-10 on tightly clustered vectors and
45-47% on uniformly random unit vectors. :func:`calibrate` measures instead of assuming.

How it measures:

* **Queries** are vectors of the table itself (a seeded sample), each searched
  *leave-one-out*: the query's own row, and exact duplicates of it, count neither as a true
  neighbour nor as a hit. A query from the data's own distribution then behaves like a fresh
  query (it lands in the same partitions), without trivially finding itself, which would add
  up to 1/k of unearned recall. Perturbing the queries instead would need a noise scale the
  data does not tell. One bias remains: k-means was fitted on these very vectors, so they sit
  a little better in their partitions than new ones. Measured against fresh queries (IVF_FLAT,
  uniform unit vectors, 2k-20k rows): the mean read 0.00-0.03 high at recall 0.3-0.8 and
  0.006 high at 0.94-0.97, where the lower bound below was within 0.002 of the fresh figure.
* **Truth** is a numpy brute force over every record's vector, streamed batch by batch
  (memory stays at one batch). It is much cheaper than LanceDB's exact search, which scans
  the table once per query (~180 ms each at 100k rows of 384 floats). All records count,
  tombstones and superseded records included: the index holds them too, and a search sees
  them before the caller filters.
* **A hit** is a returned vector whose true distance is within the k-th true distance (the
  ann-benchmarks rule), so ties and row ids changed by a concurrent compaction do no harm.
* **Recall** is the one-sided 95% lower bound of the mean per-query recall, from a
  percentile bootstrap over queries. Queries are the independent unit; the k results of one
  query are not, so a binomial bound over ``k * queries`` hits would be too narrow. When
  every query is perfect the bootstrap has no spread and would claim 1.0; the bound is then
  the Clopper-Pearson bound on the share of perfect queries, a lower bound of recall (with
  100 queries: 0.970).
* **Candidates**, roughly cheapest first: ``nprobes`` growing 1.5x from 20 up to every
  partition; a quantized index (PQ, SQ, RQ) climbs with its largest ``refine_factor``, then
  tries smaller ones (and none) at the first ``nprobes`` that passes (a flat index computes
  exact distances: refining cannot help it). A
  flat index searched in every partition is exact and needs no estimate. The last resort is
  LanceDB's exact search. A candidate is abandoned as soon as it can no longer reach the target.

Cost at 100k rows x 384 dims, 100 queries, 316 partitions, index prewarmed; measured
2026-12-03 on the project's 2-core machine while other work kept its load average at 4-7:

==========================  ========  ======================  ===========
data                        index     chosen                  calibration
==========================  ========  ======================  ===========
clustered (``Workload(1)``) IVF_FLAT  nprobes 20              1.5-2.5 s
clustered                   IVF_SQ    nprobes 20, refine 2    2.8-3.2 s
uniform random unit         IVF_FLAT  all 316 (exact)         2.8-4.8 s
uniform random unit         IVF_SQ    all 316, refine 2       7.0 s
==========================  ========  ======================  ===========

The exact truth (one streamed pass over 150 MB of vectors) is 0.7-1.9 s of it; the rest is
searches. Command: a table of ``Workload(1).arrays(0, 100_000).vectors`` (or normalised
``np.random.default_rng(1).standard_normal((100_000, 384))``), ``create_index("vector",
config=IvfFlat(num_partitions=316))`` (or ``IvfSq``), ``prewarm_index``, then the wall time
of ``await calibrate(table)``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_NPROBES", "SearchParams", "calibrate"]

# The setting DocTable searched with before calibration existed: a default, not a measurement.
DEFAULT_NPROBES = 20
# Squared distances below this share of the (centred) vectors' squared norms are float32
# rounding: such rows are duplicates of the query, and ties with the k-th neighbour are hits.
_RELATIVE_TOLERANCE = 1e-5
_SCHEMA_VERSION = 1
# A query vector with more copies than this in the table is skipped (see _exact_neighbours).
_MAX_DUPLICATES = 64
# Exact settings (recall 1 by construction) have their latency timed on this many queries.
_EXACT_TIMED_QUERIES = 10
# Bootstrap resamples: the bound's own Monte Carlo error is then ~0.001 at 100 queries.
_RESAMPLES = 4_000

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class SearchParams:
    """How to search one vector index, and the recall that was measured with it.

    ``exact`` means LanceDB's exact search (``bypass_vector_index``), the last resort.
    ``recall`` is a lower confidence bound of recall@``k`` (see the module docstring);
    ``recall_point`` the sample mean; both are 1 for settings exact by construction (exact
    search, or a flat IVF index searched in every partition). Stored as JSON with
    :meth:`as_dict`.
    """

    nprobes: int
    refine_factor: int | None
    exact: bool = False
    k: int
    recall: float
    recall_point: float
    queries: int
    rows: int  # vectors in the table when calibrated (recalibrate once it has grown a lot)
    index_type: str
    latency_ms: float  # median search latency over the sample queries at these settings
    calibrated_at: str  # ISO 8601, UTC

    def apply(self, query: Any) -> Any:
        """These settings on a LanceDB vector query (``table.query().nearest_to(v)``)."""
        return _Setting(self.nprobes, self.refine_factor, self.exact).apply(query)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (with a format version)."""
        return {"version": _SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchParams:
        """The inverse of :meth:`as_dict`; raises ValueError on another format version."""
        fields = dict(data)
        version = fields.pop("version", None)
        if version != _SCHEMA_VERSION:
            raise ValueError(f"search params format {version!r}, expected {_SCHEMA_VERSION}")
        return cls(**fields)


@dataclass(frozen=True)
class _Index:
    name: str
    index_type: str  # as LanceDB's index_stats spells it: IVF_FLAT, IVF_PQ, IVF_HNSW_SQ, ...
    metric: str
    partitions: int

    @property
    def quantized(self) -> bool:
        return any(q in self.index_type for q in ("PQ", "SQ", "RQ"))

    def exact_at(self, nprobes: int) -> bool:
        # Every partition of a flat IVF index searched: every vector compared exactly.
        return self.index_type == "IVF_FLAT" and nprobes >= self.partitions


async def calibrate(
    table: Any,
    *,
    k: int = 10,
    target: float = 0.95,
    sample_queries: int = 100,
    query_filter: str | None = None,
    column: str = "vector",
    start_nprobes: int = DEFAULT_NPROBES,
    # 8-bit SQ needed 2 here (recall 0.97 -> 1.0); PQ needs 10 or more.
    refine_factors: Sequence[int] = (2, 10, 40),
    confidence: float = 0.95,
    seed: int = 0,
) -> SearchParams:
    """The cheapest search settings whose recall@``k`` lower bound reaches ``target``.

    ``table`` is a LanceDB ``AsyncTable`` with an IVF vector index on ``column`` (distance
    l2 or cosine). ``query_filter`` (SQL) chooses the rows whose vectors may serve as
    queries, e.g. ``"deleted = false"`` where tombstones carry placeholder vectors; the
    truth is computed over every row. 100 queries (the default) bound recall to within
    about 0.01-0.03 of the sample mean at a few seconds' cost (see the module docstring).
    Runs the numpy work in worker threads, so the event loop stays free; searches run one at
    a time. Writes may go on meanwhile; a compaction should not (the sample is taken by row
    id). HNSW's ``ef`` is not tuned: an IVF_HNSW index gets nprobes, refine, or exact search.

    Raises ValueError naming the argument when one is out of range, and when the table has
    no IVF index on ``column`` or its distance type is neither l2 nor cosine.
    """
    _check_arguments(
        k=k,
        target=target,
        sample_queries=sample_queries,
        start_nprobes=start_nprobes,
        refine_factors=refine_factors,
        confidence=confidence,
    )
    index = await _vector_index(table, column)
    queries = await _sample_queries(table, column, sample_queries, query_filter, seed)
    truth = await _exact_neighbours(table, column, index.metric, queries, k)

    def chosen(setting: _Setting, lower: float, point: float, latency_ms: float) -> SearchParams:
        return SearchParams(
            nprobes=setting.nprobes,
            refine_factor=setting.refine_factor,
            exact=setting.exact,
            k=k,
            recall=lower,
            recall_point=point,
            queries=truth.size,
            rows=truth.rows,
            index_type=index.index_type,
            latency_ms=latency_ms,
            calibrated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    async def timed_exact(setting: _Setting) -> SearchParams:
        # Recall is 1 by construction: time a few queries only (exact search scans the whole
        # table, ~180 ms a query at 100k x 384 without an index).
        measured = await _measure(
            table, column, index.metric, truth.head(_EXACT_TIMED_QUERIES), setting, target=0.0
        )
        return chosen(setting, 1.0, 1.0, measured[1] if measured else math.nan)

    async def passing(setting: _Setting) -> SearchParams | None:
        measured = await _measure(table, column, index.metric, truth, setting, target=target)
        if measured is None:
            return None  # abandoned: it could no longer reach the target
        recalls, latency_ms = measured
        lower = await asyncio.to_thread(_lower_bound, recalls, confidence, seed)
        return (
            chosen(setting, lower, float(np.mean(recalls)), latency_ms) if lower >= target else None
        )

    # A quantized index walks the ladder with its largest refine factor (about the recall a
    # flat index would have), then tries cheaper refinements at the first nprobes that
    # passes: one pass per step instead of one per refine factor (10 s -> ~5 s at 100k).
    refines = sorted(refine_factors) if index.quantized else []
    for nprobes in _ladder(index.partitions, start_nprobes):
        if index.exact_at(nprobes):
            return await timed_exact(_Setting(nprobes, None))
        found = await passing(_Setting(nprobes, refines[-1] if refines else None))
        if found is None:
            continue
        for refine in [None, *refines[:-1]] if refines else []:
            cheaper = await passing(_Setting(nprobes, refine))
            if cheaper is not None:
                return cheaper
        return found
    return await timed_exact(_Setting(nprobes=index.partitions, refine_factor=None, exact=True))


@dataclass(frozen=True)
class _Setting:
    nprobes: int
    refine_factor: int | None
    exact: bool = False

    def apply(self, query: Any) -> Any:
        if self.exact:
            return query.bypass_vector_index()
        query = query.nprobes(self.nprobes)
        return query if self.refine_factor is None else query.refine_factor(self.refine_factor)


def _check_arguments(
    *,
    k: int,
    target: float,
    sample_queries: int,
    start_nprobes: int,
    refine_factors: Sequence[int],
    confidence: float,
) -> None:
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1], got {target!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k!r}")
    if sample_queries < 2:  # a bootstrap over one query has no spread to measure
        raise ValueError(f"sample_queries must be at least 2, got {sample_queries!r}")
    if start_nprobes < 1:
        raise ValueError(f"start_nprobes must be at least 1, got {start_nprobes!r}")
    if any(r < 1 for r in refine_factors):
        raise ValueError(f"refine_factors must all be at least 1, got {list(refine_factors)!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


async def _vector_index(table: Any, column: str) -> _Index:
    for config in await table.list_indices():
        if list(config.columns) == [column]:
            break
    else:
        raise ValueError(f"the table has no vector index on column {column!r}")
    stats = await table.index_stats(config.name)
    if stats is None or not stats.index_type.startswith("IVF"):
        found = None if stats is None else stats.index_type
        raise ValueError(f"the index on {column!r} is not an IVF vector index: {found}")
    metric = str(stats.distance_type).lower()
    if metric not in ("l2", "cosine"):
        raise ValueError(f"calibrate supports distance types l2 and cosine, got {metric!r}")
    dataset = await table.to_lance()
    partitions = await asyncio.to_thread(_partition_count, dataset, config.name)
    return _Index(config.name, stats.index_type, metric, partitions)


def _partition_count(dataset: Any, index_name: str) -> int:
    # LanceDB's index_stats does not say; Lance's does (per segment: a delta may differ).
    stats = dataset.stats.index_stats(index_name)
    segments = stats.get("segments") or stats.get("indices") or []
    return max(int(s.get("num_partitions", 1)) for s in segments) if segments else 1


async def _sample_queries(
    table: Any, column: str, count: int, query_filter: str | None, seed: int
) -> Matrix:
    scan = table.query().select(["_rowid"]).with_row_id()
    if query_filter:
        scan = scan.where(query_filter)
    row_ids = (await scan.to_arrow()).column("_rowid").to_numpy()
    if row_ids.size < 2:
        raise ValueError(f"calibrate needs at least 2 query rows, the table has {row_ids.size}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(row_ids, size=min(count, row_ids.size), replace=False)
    taken = await table.take_row_ids([int(r) for r in chosen]).select([column]).to_arrow()
    return _as_matrix(taken.column(column))


def _as_matrix(column: Any) -> Matrix:
    """A FixedSizeList column (array or chunked) as an (n, dim) float32 matrix."""
    dim = column.type.list_size
    chunks = getattr(column, "chunks", [column])
    flat = [c.flatten().to_numpy(zero_copy_only=False) for c in chunks]
    if not flat:
        return np.zeros((0, dim), np.float32)
    return np.concatenate(flat).astype(np.float32, copy=False).reshape(-1, dim)


def _normalized(vectors: Matrix) -> Matrix:
    # Cosine distance ranks as squared L2 between unit vectors.
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32, copy=False)


class _Truth:
    """The true k-th neighbour distance of each query, and its duplicates in the table.

    Distances are computed about the queries' mean (L2 does not change under a shift): the
    float32 expansion ``|q|^2 + |x|^2 - 2 q.x`` then loses no precision to vectors far from
    the origin, and the tolerance below stays at the scale of the distances themselves.
    """

    def __init__(self, queries: Matrix, k: int, center: Matrix | None = None) -> None:
        self.queries = queries  # as given: these are what the index is searched with
        self.k = k
        self.center = queries.mean(axis=0) if center is None else center
        self._centered = queries - self.center
        self._norms = (self._centered * self._centered).sum(axis=1)
        self._best = np.full((queries.shape[0], k), np.inf, np.float32)
        self.kth = np.full(queries.shape[0], np.inf, np.float32)
        self.duplicates = np.zeros(queries.shape[0], np.int64)
        self.wanted = np.zeros(queries.shape[0], np.int64)
        self.rows = 0

    @property
    def size(self) -> int:
        return int(self.queries.shape[0])

    def update(self, vectors: Matrix) -> None:
        """Fold one batch of the table's vectors in (squared L2, float32 BLAS)."""
        self.rows += vectors.shape[0]
        vectors = vectors - self.center
        norms = (vectors * vectors).sum(axis=1)
        scale = self._norms[:, None] + norms[None, :]
        dist = scale - 2 * (self._centered @ vectors.T)
        same = dist <= _RELATIVE_TOLERANCE * scale
        self.duplicates += same.sum(axis=1)
        dist[same] = np.inf
        merged = np.concatenate([self._best, dist], axis=1)
        self._best = np.partition(merged, self.k - 1, axis=1)[:, : self.k]
        self.kth = self._best.max(axis=1)
        # Fewer than k other rows (a tiny table): recall counts those there are.
        self.wanted = np.isfinite(self._best).sum(axis=1)

    def subset(self, keep: npt.NDArray[np.bool_]) -> _Truth:
        part = _Truth(self.queries[keep], self.k, self.center)
        part.kth, part.duplicates = self.kth[keep], self.duplicates[keep]
        part.wanted, part.rows = self.wanted[keep], self.rows
        return part

    def head(self, count: int) -> _Truth:
        return self.subset(np.arange(self.size) < count)

    def recall(self, i: int, found: Matrix) -> float:
        """Recall of one query's results: true neighbours found (itself not counted)."""
        q = self._centered[i].astype(np.float64)
        vectors = found.astype(np.float64) - self.center
        dist = ((vectors - q) ** 2).sum(axis=1)
        tolerance = _RELATIVE_TOLERANCE * (q @ q + (vectors * vectors).sum(axis=1))
        hits = (dist > tolerance) & (dist <= self.kth[i] + tolerance)
        wanted = int(self.wanted[i])
        return min(int(hits.sum()), wanted) / wanted if wanted else 1.0


async def _exact_neighbours(
    table: Any, column: str, metric: str, queries: Matrix, k: int
) -> _Truth:
    """Each query's true neighbours over every row, one streamed batch at a time."""
    if metric == "cosine":
        queries = _normalized(queries)
    truth = _Truth(queries, k)
    # Large batches: a few big matrix products instead of ~100 small ones (1,024 rows each by
    # default), which cost 3-30 ms apiece here when other processes load the two cores.
    reader = await table.query().select([column]).to_batches(max_batch_length=16_384)
    async for batch in reader:
        vectors = _as_matrix(batch.column(column))
        if metric == "cosine":
            vectors = _normalized(vectors)
        await asyncio.to_thread(truth.update, vectors)
    # A vector with many copies (a placeholder such as a tombstone's zeros) says nothing
    # about search quality, and its search would need k + copies results.
    keep = truth.duplicates <= _MAX_DUPLICATES
    if not keep.any():
        raise ValueError(
            f"every sampled query vector has more than {_MAX_DUPLICATES} copies in the table;"
            " pass a query_filter that excludes placeholder vectors"
        )
    return truth.subset(keep)


def _ladder(partitions: int, start: int) -> list[int]:
    """The nprobes to try, cheapest first: growing by half up to every partition."""
    ladder = []
    nprobes = min(start, partitions)
    while nprobes < partitions:
        ladder.append(nprobes)
        # Steps of 1.5x rather than 2x: on uniform data recall climbs slowly (0.88 at 80 of
        # 141 partitions), and a failing step is cheap (it is abandoned early).
        nprobes = math.ceil(nprobes * 1.5)
    ladder.append(partitions)
    return ladder


async def _measure(
    table: Any, column: str, metric: str, truth: _Truth, setting: _Setting, *, target: float
) -> tuple[list[float], float] | None:
    """Per-query recalls and the median latency (ms); None once the target is out of reach."""
    recalls: list[float] = []
    latencies: list[float] = []
    for i in range(truth.size):
        query = table.query().nearest_to(truth.queries[i]).column(column).distance_type(metric)
        query = setting.apply(query).limit(_limit(truth, i)).select([column, "_distance"])
        start = time.perf_counter()
        result = await query.to_arrow()
        latencies.append((time.perf_counter() - start) * 1e3)
        found = _as_matrix(result.column(column))
        if metric == "cosine":
            found = _normalized(found)  # as the truth's vectors are
        recalls.append(truth.recall(i, found))
        # Even if every remaining query were perfect, the mean would stay below the target.
        if (sum(recalls) + truth.size - len(recalls)) / truth.size < target:
            return None
    return recalls, float(np.median(latencies))


def _limit(truth: _Truth, i: int) -> int:
    # The query's own row and its copies come back too, and are not counted.
    return truth.k + int(truth.duplicates[i])


def _lower_bound(recalls: list[float], confidence: float, seed: int) -> float:
    """A one-sided lower confidence bound of the mean per-query recall.

    Written with numpy rather than ``scipy.stats.bootstrap``/``binomtest``: importing
    scipy.stats took 1.4-3.3 s here, in the service's process and mostly holding the GIL,
    for a percentile bootstrap of a mean (a few lines) and a closed form. The tests check
    both against scipy.
    """
    sample = np.asarray(recalls, dtype=np.float64)
    if np.ptp(sample) == 0:
        # No spread for a bootstrap. Every query reached this value, so recall >= value x the
        # share of such queries. The Clopper-Pearson lower bound of a share seen n times in n
        # is (1 - confidence) ** (1 / n).
        return float(sample[0] * (1 - confidence) ** (1 / sample.size))
    rng = np.random.default_rng(seed)
    resampled = sample[rng.integers(0, sample.size, size=(_RESAMPLES, sample.size))]
    return float(np.quantile(resampled.mean(axis=1), 1 - confidence))
