"""Seeded documents with clustered embeddings, query vectors, and exact ground truth.

Every value is a pure function of ``(seed, dim, n_clusters, noise)`` and the row number:
rows are generated in fixed blocks whose random stream is seeded by ``(seed, block)``, so
``documents(0, 10)`` and ``documents(5, 5)`` agree on rows 5-9 in any process, on any
machine (no use of ``hash()``, which varies with ``PYTHONHASHSEED``).

Embeddings are clustered: ``n_clusters`` centroids on the unit sphere, each point a
centroid plus Gaussian noise, normalised. Random Gaussian vectors have no neighbourhood
structure that an index could exploit; clustered data is what an embedding model gives.

With ``data="uniform"`` the embeddings are random unit vectors, uniform on the sphere (a
normalised Gaussian): the hard set for an approximate index, since no neighbourhood
structure helps it (FACTS: IVF_FLAT, sqrt(n) partitions, nprobes 20 finds 0.45-0.47 of the
true top-10 on 20k such vectors, 1.0 on 32 tight clusters). Query vectors follow the same
distribution as the documents. Distances use L2, LanceDB's default metric.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "DATASETS",
    "Dataset",
    "DocumentArrays",
    "Workload",
    "available_memory",
    "doc_id",
    "exact_top_k",
    "recall_at_k",
    "recall_per_query",
    "table_memory",
]

Dataset = Literal["clustered", "uniform"]
DATASETS: tuple[Dataset, ...] = ("clustered", "uniform")

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

# Rows are drawn in blocks of this many so any slice can be rebuilt from its blocks alone.
# 1024 rows x 384 dims is 1.5 MB of float32: a one-row call costs ~5 ms (a whole block),
# while bulk generation loses nothing to per-block overhead.
_BLOCK = 1024
# Distinct stream tags so queries and lookups never reuse a document block's stream.
_QUERY_STREAM = 2**32 - 1
_LOOKUP_STREAM = 2**32 - 2
_CENTROID_STREAM = 2**32 - 3
_SENTENCES = 3  # sentences per document: "a few", enough for full-text search to bite
_WORDS = 7  # words per sentence
# Texts pick sentences from a seeded pool: joining 3 prebuilt strings per row is ~10x faster
# than assembling 21 words, and 2048 sentences of 7 words still give varied, searchable text.
_POOL = 2048
_SOURCES = ("notes", "mail", "web", "chat")
_VOCAB_TEXT = (
    "vector index query table version manifest cache sync backup storage latency "
    "network bucket object fragment column schema embedding cluster search recall "
    "commit replica snapshot region desktop browser server client request response "
    "document record field value offset batch stream shard merge compact retain "
    "local remote cloud disk memory thread worker timer sample median tail budget"
)
_VOCAB = tuple(_VOCAB_TEXT.split())


# Peak memory of a table being generated and imported, per row: its vector is held about
# three times at once (the generated array, the Arrow table, LanceDB's write buffer), and
# its id, text and JSON metadata cost about 1 kB as Python strings plus Arrow buffers.
_VECTOR_COPIES = 3
_ROW_OVERHEAD_BYTES = 1024


def table_memory(rows: int, dim: int) -> int:
    """Bytes of memory generating and importing a ``rows``-row table needs, roughly."""
    return rows * (dim * 4 * _VECTOR_COPIES + _ROW_OVERHEAD_BYTES)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def doc_id(i: int) -> str:
    """The id of row ``i``: ``doc-`` and six digits (more when ``i`` needs them)."""
    return f"doc-{i:06d}"


@dataclass(frozen=True)
class DocumentArrays:
    """A slice of documents as arrays: the bulk path (no per-row dicts)."""

    start: int
    ids: list[str]
    texts: list[str]
    vectors: FloatArray  # shape (count, dim), float32, unit length
    clusters: IntArray  # the centroid each row was drawn around (-1: uniform data)

    def metadata(self, i: int) -> dict[str, Any]:
        """The metadata dict of the ``i``-th row of this slice."""
        row = self.start + i
        return {
            "cluster": int(self.clusters[i]),
            "source": _SOURCES[row % len(_SOURCES)],
            "created_at": _created_at(row),
            "word_count": _SENTENCES * _WORDS,
        }


def _created_at(row: int) -> str:
    # A fixed epoch plus one minute per row: deterministic and realistic-looking.
    return f"2024-01-{1 + (row // 1440) % 28:02d}T{(row // 60) % 24:02d}:{row % 60:02d}:00Z"


class Workload:
    """Deterministic per-user document tables: ``id``, ``text``, ``vector``, ``metadata``."""

    def __init__(
        self,
        seed: int,
        dim: int = 384,
        *,
        n_clusters: int = 32,
        noise: float = 0.5,
        data: Dataset = "clustered",
    ) -> None:
        # 32 clusters in 384 dims: each of 100k rows shares a cluster with ~3k others, so a
        # top-10 is a ranking problem inside a cluster, not a trivially separable one.
        # noise 0.5 (norm of the noise vector before normalising) puts same-cluster points
        # ~0.6 apart and different clusters ~1.4 apart in L2: distinct, but not degenerate.
        if dim < 1 or n_clusters < 1 or noise < 0 or seed < 0 or data not in DATASETS:
            raise ValueError(
                f"Workload needs seed >= 0, dim >= 1, n_clusters >= 1, noise >= 0, data in "
                f"{DATASETS}; got seed={seed}, dim={dim}, n_clusters={n_clusters}, "
                f"noise={noise}, data={data!r}"
            )
        self.data: Dataset = data
        self.seed = seed
        self.dim = dim
        self.n_clusters = n_clusters
        self.noise = noise
        rng = np.random.default_rng([seed, _CENTROID_STREAM])
        self.centroids: FloatArray = _normalise(rng.standard_normal((n_clusters, dim)))
        words = np.array(_VOCAB, dtype=object)[rng.integers(0, len(_VOCAB), (_POOL, _WORDS))]
        self._sentences = [" ".join(w).capitalize() + "." for w in words.tolist()]

    def _rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream])

    def describe(self, rows: int, queries: int) -> str:
        """The data a figure was measured on, such as ``uniform, 10000 rows x 384 dim, 120 q``."""
        shape = f"clustered ({self.n_clusters} clusters)" if self.data == "clustered" else "uniform"
        return f"{shape}, {rows} rows x {self.dim} dim, {queries} queries"

    def _around(self, rng: np.random.Generator, clusters: IntArray) -> FloatArray:
        if self.data == "uniform":
            # A normalised Gaussian is uniform on the unit sphere; clusters are all -1.
            clusters[:] = -1
            return _normalise(rng.standard_normal((len(clusters), self.dim), dtype=np.float32))
        noise = rng.standard_normal((len(clusters), self.dim), dtype=np.float32)
        noise *= np.float32(self.noise / np.sqrt(self.dim))
        return _normalise(self.centroids[clusters] + noise)

    def _block(self, b: int) -> tuple[IntArray, FloatArray, npt.NDArray[np.int64]]:
        rng = self._rng(b)
        clusters = rng.integers(0, self.n_clusters, _BLOCK, dtype=np.int64)
        vectors = self._around(rng, clusters)
        sentences = rng.integers(0, _POOL, (_BLOCK, _SENTENCES), dtype=np.int64)
        return clusters, vectors, sentences

    def arrays(self, start: int, count: int) -> DocumentArrays:
        """Rows ``start .. start+count-1`` as arrays (100k x 384 in about a second)."""
        if start < 0 or count < 0:
            raise ValueError(f"start and count must be >= 0; got {start}, {count}")
        clusters = np.empty(count, np.int64)
        vectors = np.empty((count, self.dim), np.float32)
        sentences = np.empty((count, _SENTENCES), np.int64)
        # Copy each block's overlap straight into the output: no concatenated temporaries.
        for b in range(start // _BLOCK, (start + count + _BLOCK - 1) // _BLOCK):
            lo, hi = max(start, b * _BLOCK), min(start + count, (b + 1) * _BLOCK)
            c, v, t = self._block(b)
            src, dst = slice(lo - b * _BLOCK, hi - b * _BLOCK), slice(lo - start, hi - start)
            clusters[dst], vectors[dst], sentences[dst] = c[src], v[src], t[src]
        pool = self._sentences
        return DocumentArrays(
            start=start,
            ids=[doc_id(i) for i in range(start, start + count)],
            texts=[" ".join([pool[j] for j in row]) for row in sentences.tolist()],
            vectors=vectors,
            clusters=clusters,
        )

    def documents(self, start: int, count: int) -> list[dict[str, Any]]:
        """Rows as dicts ``{"id", "text", "vector" (list of float), "metadata" (dict)}``."""
        a = self.arrays(start, count)
        return [
            {
                "id": a.ids[i],
                "text": a.texts[i],
                "vector": a.vectors[i].tolist(),
                "metadata": a.metadata(i),
            }
            for i in range(count)
        ]

    def arrow_table(
        self, start: int, count: int, *, metadata: Literal["struct", "json"] = "struct"
    ) -> Any:
        """Rows as a ``pyarrow.Table``; ``vector`` is ``fixed_size_list<float32>[dim]``.

        ``metadata`` is a struct column (what LanceDB infers from :meth:`documents`) or,
        with ``metadata="json"``, a JSON string column.
        """
        import pyarrow as pa

        a = self.arrays(start, count)
        rows = range(start, start + count)
        flat = pa.array(a.vectors.reshape(-1), type=pa.float32())
        if metadata == "json":
            meta = pa.array([json.dumps(a.metadata(i), sort_keys=True) for i in range(count)])
        else:
            meta = pa.StructArray.from_arrays(
                [
                    pa.array(a.clusters, pa.int64()),
                    pa.array([_SOURCES[r % len(_SOURCES)] for r in rows], pa.string()),
                    pa.array([_created_at(r) for r in rows], pa.string()),
                    pa.array(np.full(count, _SENTENCES * _WORDS), pa.int64()),
                ],
                names=["cluster", "source", "created_at", "word_count"],
            )
        return pa.table(
            {
                "id": pa.array(a.ids, pa.string()),
                "text": pa.array(a.texts, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(flat, self.dim),
                "metadata": meta,
            }
        )

    def query_vectors(self, n: int) -> FloatArray:
        """``n`` query vectors drawn around the same centroids as the documents."""
        return self._queries(n)[1]

    def query_clusters(self, n: int) -> IntArray:
        """The centroid each of the first ``n`` query vectors was drawn around."""
        return self._queries(n)[0]

    def _queries(self, n: int) -> tuple[IntArray, FloatArray]:
        rng = self._rng(_QUERY_STREAM)
        clusters = rng.integers(0, self.n_clusters, n, dtype=np.int64)
        return clusters, self._around(rng, clusters)

    def lookup_ids(self, n: int, table_size: int) -> list[str]:
        """``n`` ids to read back from a table of ``table_size`` rows (uniform, seeded)."""
        rows = self._rng(_LOOKUP_STREAM).integers(0, table_size, n)
        return [doc_id(int(i)) for i in rows]


def _normalise(x: npt.NDArray[Any]) -> FloatArray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def exact_top_k(vectors: npt.ArrayLike, queries: npt.ArrayLike, k: int) -> IntArray:
    """Brute-force L2 top-``k`` row indices per query, nearest first; shape ``(q, k)``."""
    x = np.asarray(vectors, dtype=np.float32)
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    if k < 1 or len(x) == 0:
        raise ValueError(f"exact_top_k needs k >= 1 and at least one vector; got k={k}, {len(x)}")
    k = min(k, len(x))
    x_sq = np.einsum("ij,ij->i", x, x)
    out = np.empty((len(q), k), dtype=np.int64)
    # 64 queries at a time bounds the distance matrix to 64 x rows x 4 bytes (25 MB at 100k).
    for lo in range(0, len(q), 64):
        chunk = q[lo : lo + 64]
        d = x_sq[None, :] - 2.0 * (chunk @ x.T)  # + |q|^2, constant per query
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(d, part, axis=1).argsort(axis=1, kind="stable")
        out[lo : lo + 64] = np.take_along_axis(part, order, axis=1)
    return out


def recall_at_k(
    found_ids: Sequence[str] | Sequence[Sequence[str]],
    true_ids: Sequence[str] | Sequence[Sequence[str]],
) -> float:
    """Share of true neighbours found: ``|found & true| / |true|``, averaged over queries.

    Takes one query (two lists of ids) or many (two lists of lists, same length);
    ``k`` is the length of each true list. A query with no true ids counts as 1.0.
    """
    if not true_ids:
        return 1.0
    single = isinstance(true_ids[0], str)
    found_q = [found_ids] if single else list(found_ids)
    true_q = [true_ids] if single else list(true_ids)
    if len(found_q) != len(true_q):
        raise ValueError(f"{len(found_q)} result lists for {len(true_q)} queries")
    scores = [
        len(set(f) & set(t)) / len(set(t)) if t else 1.0
        for f, t in zip(found_q, true_q, strict=True)
    ]
    return float(np.mean(scores))


def recall_per_query(
    found_ids: Sequence[Sequence[str]], true_ids: Sequence[Sequence[str]]
) -> list[float]:
    """recall@k of each query (:func:`recall_at_k` of one query), in order."""
    if len(found_ids) != len(true_ids):
        raise ValueError(f"{len(found_ids)} result lists for {len(true_ids)} queries")
    return [recall_at_k(list(f), list(t)) for f, t in zip(found_ids, true_ids, strict=True)]
