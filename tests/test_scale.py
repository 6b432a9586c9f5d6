"""Large indexes: dense index type chosen by size, memory-mapped loading, the lazy chunk store.

The million-chunk measurements live in benchmarks/scale.py; these tests check
the same code paths on small data with the size threshold lowered.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest

from kbqa.index import (ChunkLinks, ChunkStore, RefinedIVF, build_dense, exact_vectors,
                        link_languages, load_index, read_dense, write_dense)
from kbqa.kb import KnowledgeBase
from kbqa.retrieve import chunk_page, dense_search
from kbqa.segment import Chunk
from tests.conftest import CORPUS, make_config

DIM = 64


def _clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 200 centres: the shape of real embeddings (topics), not noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 200, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return _clustered(4000, seed=1)


def _exact_top(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def tuning() -> np.ndarray:
    """Question-like vectors the build tunes on (fresh points, not rows of the index)."""
    return _clustered(300, seed=5)


def test_index_type_follows_the_size_threshold(vectors, tuning):
    flat, info = build_dense(vectors, make_config(exact_search_max_vectors=4000), queries=tuning)
    assert info == {"type": "flat"} and type(flat).__name__ == "IndexFlatIP"
    approx, info = build_dense(vectors, make_config(exact_search_max_vectors=3999),
                               queries=tuning)
    assert info["type"] == "ivf-sq8" and isinstance(approx, RefinedIVF)
    assert info["nlist"] == min(int(2 * np.sqrt(4000)), 4000 // 39)
    # Tuned to the target, and cheaper than probing every list.
    assert info["recall@10"] >= 0.98 and info["nprobe"] < info["nlist"]


def test_approximate_recall_against_exact_on_fresh_queries(vectors, tuning):
    """recall@10 vs exact search on queries the build never saw, not its tuning sample."""
    index, info = build_dense(vectors, make_config(exact_search_max_vectors=1000),
                              queries=tuning)
    queries = _clustered(300, seed=2)
    _, got = index.search(queries, 10)
    truth = _exact_top(vectors, queries, 10)
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth)])
    assert recall >= 0.95, (recall, info)
    # The re-ranking makes the scores exact inner products, not 8-bit approximations.
    scores, ids = index.search(queries[:5], 3)
    np.testing.assert_allclose(scores, np.take_along_axis(queries[:5] @ vectors.T, ids, 1),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threshold", [10_000, 1000])
def test_memory_mapped_index_answers_like_the_one_in_memory(vectors, tuning, tmp_path,
                                                            threshold):
    index, info = build_dense(vectors, make_config(exact_search_max_vectors=threshold),
                              queries=tuning)
    path = tmp_path / write_dense(index, info, tmp_path, "test")
    mapped = read_dense(path, info)
    queries = _clustered(50, seed=3)
    d1, i1 = index.search(queries, 10)
    d2, i2 = mapped.search(queries, 10)
    assert (i1 == i2).all()
    np.testing.assert_allclose(d1, d2, rtol=1e-6)
    np.testing.assert_array_equal(exact_vectors(mapped), vectors)
    # The file is mapped, not copied: its pages are file-backed (shared by
    # every worker through the page cache), none anonymous.
    rss, anon = _mapping_kb(path)
    assert rss > 0 and anon == 0, (rss, anon)
    if info["type"] != "flat":  # the exact rows are read per query, never mapped
        assert _mapping_kb(tmp_path / info["vectors"]) == (0, 0)


def _mapping_kb(path) -> tuple[int, int]:
    """Resident and anonymous kB of this process's mappings of ``path``."""
    rss = anon = 0
    inside = False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split()
            if not head:
                continue
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                inside = len(head) >= 6 and head[5] == str(path)
            elif inside and head[0] == "Rss:":
                rss += int(head[1])
            elif inside and head[0] == "Anonymous:":
                anon += int(head[1])
    return rss, anon


def test_chunk_store_returns_the_chunks_as_written(kb):
    idx = kb.index
    store = idx.chunks
    assert isinstance(store, ChunkStore)
    lines = (idx.path / "chunks.jsonl").read_text(encoding="utf-8").splitlines()
    old = [Chunk(**json.loads(line)) for line in lines]  # how the index used to be loaded
    assert len(store) == len(old) == idx.manifest["chunks"]
    assert [asdict(c) for c in store] == [asdict(c) for c in old]
    for i in (0, 1, len(old) // 2, len(old) - 1):
        assert store[i] == old[i] and store[i - len(old)] == old[i]
    assert store[3:6] == old[3:6]
    with pytest.raises(IndexError):
        store[len(old)]
    assert _mapping_kb(idx.path / "chunks.jsonl") == (0, 0)  # read, not mapped
    # Whole-index answers from the arrays equal the scans over decoded chunks.
    assert [store.lang(i) for i in range(len(old))] == [c.lang for c in old]
    assert [store.ordinal(i) for i in range(len(old))] == [c.ordinal for c in old]
    for lang in ("zh", "en"):
        assert idx.lang_share[lang] == pytest.approx(sum(c.lang == lang for c in old) / len(old))
    assert isinstance(idx.links, ChunkLinks) and dict(idx.links) == link_languages(old)
    assert idx.links.get(-1) is None and idx.links.get(len(old)) is None
    spans: dict[str, list[int]] = {}
    for i, c in enumerate(old):
        spans.setdefault(c.doc_id, []).append(i)
    for doc_id, rows in spans.items():
        assert list(store.doc_span(doc_id)) == rows
    for c in old[::25]:
        expect = [i for i, o in enumerate(old)
                  if chunk_page(o) == chunk_page(c) and o.lang == c.lang]
        assert store.page_rows(chunk_page(c), c.lang) == expect


@pytest.fixture(scope="module")
def approx_index(tmp_path_factory):
    """A real index of a few pages built with the exact-search threshold set below its size."""
    tmp = tmp_path_factory.mktemp("scale")
    src = tmp / "src"
    for lang in ("en", "zh"):
        for name in ("etcd.md", "kubelet.md", "kube-proxy.md", "pods.md"):
            if (CORPUS / lang / name).is_file():
                (src / lang).mkdir(parents=True, exist_ok=True)
                shutil.copy(CORPUS / lang / name, src / lang / name)
    cfg = make_config(index_dir=tmp / "idx", sources=(src,), exact_search_max_vectors=20)
    KnowledgeBase(cfg).build()
    return src, cfg


def test_approximate_index_serves_and_stays_incremental(approx_index):
    src, cfg = approx_index
    before = load_index(cfg.index_dir)
    entry = before.manifest["encoders"][0]
    assert len(before.chunks) > 20 and entry["index"]["type"] == "ivf-sq8"
    assert entry["index"]["recall@10"] >= 0.95
    kb = KnowledgeBase(cfg)
    name = entry["name"]
    vecs = exact_vectors(before.dense[name])
    for question in ("What is etcd?", "kubelet 如何上报节点状态？", "kube-proxy modes"):
        q = kb._query_vector(name, question)
        exact = np.argsort(-(vecs @ q), kind="stable")[:10].tolist()
        assert [i for i, _ in dense_search(before, name, q, 10)] == exact
    res = kb.search("What is etcd?")
    assert kb.index.chunks[res.hits[0].index].source == "en/etcd.md"
    # An incremental build reuses the exact vectors, not their 8-bit codes.
    old_vecs = exact_vectors(before.dense[entry["name"]])
    old_rows = {c.id: i for i, c in enumerate(before.chunks) if c.source != "en/kubelet.md"}
    with open(src / "en" / "kubelet.md", "a", encoding="utf-8") as fh:
        fh.write("\nThe kubelet also rotates container logs on the node.\n")
    report = KnowledgeBase(cfg).build()
    assert not report.full and report.reused > 0
    after = load_index(cfg.index_dir)
    new_vecs = exact_vectors(after.dense[entry["name"]])
    same = [(old_rows[c.id], i) for i, c in enumerate(after.chunks) if c.id in old_rows]
    assert same and all((old_vecs[o] == new_vecs[n]).all() for o, n in same)
