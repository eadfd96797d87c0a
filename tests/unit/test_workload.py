"""Seeded, clustered workload data: determinism, shapes, clustering, ground truth, recall."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from lancesync_bench.workload import Workload, doc_id, exact_top_k, recall_at_k, recall_per_query


def test_same_seed_gives_identical_documents() -> None:
    a, b = Workload(7, 32).documents(0, 50), Workload(7, 32).documents(0, 50)
    assert a == b


def test_different_seed_gives_different_documents() -> None:
    a, b = Workload(7, 32).arrays(0, 50), Workload(8, 32).arrays(0, 50)
    assert not np.allclose(a.vectors, b.vectors)
    assert a.texts != b.texts


def test_same_seed_is_identical_in_another_process() -> None:
    code = (
        "from lancesync_bench.workload import Workload;"
        "import hashlib;"
        "a = Workload(11, 16).arrays(0, 300);"
        "print(hashlib.sha256(a.vectors.tobytes() + '|'.join(a.texts).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1


def test_any_slice_matches_the_whole_across_block_boundaries() -> None:
    w = Workload(3, 8)
    whole = w.documents(4000, 200)
    assert w.documents(4090, 20) == whole[90:110]
    assert w.documents(4096, 1)[0] == whole[96]


def test_document_fields_and_types() -> None:
    doc = Workload(1, 24).documents(42, 1)[0]
    assert doc["id"] == "doc-000042" == doc_id(42)
    assert isinstance(doc["text"], str) and doc["text"].count(".") >= 2
    assert len(doc["vector"]) == 24 and all(isinstance(x, float) for x in doc["vector"])
    assert set(doc["metadata"]) == {"cluster", "source", "created_at", "word_count"}


def test_vectors_are_float32_unit_length() -> None:
    a = Workload(1, 64).arrays(0, 500)
    assert a.vectors.dtype == np.float32 and a.vectors.shape == (500, 64)
    np.testing.assert_allclose(np.linalg.norm(a.vectors, axis=1), 1.0, rtol=1e-5)


def test_arrow_table_matches_documents_and_lancedb_inference() -> None:
    w = Workload(5, 16)
    table = w.arrow_table(10, 30)
    docs = w.documents(10, 30)
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 16)
    assert table.column("id").to_pylist() == [d["id"] for d in docs]
    assert table.column("metadata").to_pylist() == [d["metadata"] for d in docs]
    inferred = pa.Table.from_pylist(docs).schema.field("metadata").type
    assert table.schema.field("metadata").type == inferred
    np.testing.assert_allclose(
        np.stack(table.column("vector").to_numpy(zero_copy_only=False)),
        np.array([d["vector"] for d in docs], dtype=np.float32),
    )
    assert w.arrow_table(0, 3, metadata="json").schema.field("metadata").type == pa.string()


def test_exact_top_10_of_a_query_mostly_shares_its_cluster() -> None:
    w = Workload(9, 64, n_clusters=16)
    data = w.arrays(0, 5000)
    top = exact_top_k(data.vectors, w.query_vectors(50), 10)
    same = data.clusters[top] == w.query_clusters(50)[:, None]
    assert same.mean() > 0.9


def test_exact_top_k_matches_a_plain_sort() -> None:
    rng = np.random.default_rng(0)
    x, q = rng.standard_normal((300, 8)), rng.standard_normal((5, 8))
    expected = np.argsort(((x[None] - q[:, None]) ** 2).sum(axis=2), axis=1)[:, :7]
    np.testing.assert_array_equal(exact_top_k(x, q, 7), expected)


def test_query_vectors_are_deterministic_and_separate_from_documents() -> None:
    w = Workload(2, 16)
    np.testing.assert_array_equal(w.query_vectors(20), Workload(2, 16).query_vectors(20))
    assert not np.allclose(w.query_vectors(20), w.arrays(0, 20).vectors)


def test_recall_at_k() -> None:
    assert recall_at_k(["a", "b", "c", "d"], ["a", "b", "x", "y"]) == 0.5
    assert recall_at_k([["a"], ["z"]], [["a"], ["b"]]) == 0.5
    assert recall_at_k([], []) == 1.0
    with pytest.raises(ValueError, match="queries"):
        recall_at_k([["a"]], [["a"], ["b"]])


def test_lookup_ids_stay_in_the_table() -> None:
    ids = Workload(1, 8).lookup_ids(100, 50)
    assert len(ids) == 100 and all(0 <= int(i.removeprefix("doc-")) < 50 for i in ids)


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="dim"):
        Workload(1, 0)
    with pytest.raises(ValueError, match="start"):
        Workload(1, 8).arrays(-1, 3)


def test_uniform_data_is_unit_vectors_without_cluster_structure() -> None:
    wl = Workload(seed=42, dim=64, data="uniform")
    a = wl.arrays(0, 4000)
    assert a.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(a.vectors, axis=1), 1.0, atol=1e-5)
    assert set(a.clusters.tolist()) == {-1} and a.metadata(0)["cluster"] == -1
    # Uniform on the sphere: the mean is ~0 (|mean| ~ 1/sqrt(n)) and every direction has
    # variance 1/dim; clustered data has neither.
    assert np.linalg.norm(a.vectors.mean(axis=0)) < 0.05
    assert np.allclose(a.vectors.var(axis=0).mean(), 1 / 64, rtol=0.05)
    clustered = Workload(seed=42, dim=64).arrays(0, 4000).vectors
    assert np.linalg.norm(clustered.mean(axis=0)) > 0.1
    # Deterministic, sliceable like the clustered data, and queries from the same law.
    assert np.array_equal(wl.arrays(1000, 50).vectors, a.vectors[1000:1050])
    q = wl.query_vectors(100)
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(q, Workload(seed=42, dim=64, data="uniform").query_vectors(100))
    assert wl.describe(4000, 100) == "uniform, 4000 rows x 64 dim, 100 queries"
    assert Workload(1, 8).describe(10, 5).startswith("clustered (32 clusters)")
    with pytest.raises(ValueError, match="data"):
        Workload(1, 8, data="gaussian")  # type: ignore[arg-type]


def test_recall_per_query() -> None:
    assert recall_per_query([["a", "b"], ["c", "x"]], [["a", "b"], ["c", "d"]]) == [1.0, 0.5]
    with pytest.raises(ValueError):
        recall_per_query([["a"]], [])
