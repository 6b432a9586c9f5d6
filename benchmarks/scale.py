"""kbqa at scale: the docs index replicated to ~100k and ~1M chunks.

    .venv/bin/python benchmarks/scale.py [--sizes 100000,1000000] [--work /tmp/kbqa-scale]
        [--shared ../shared] [--out benchmarks/results/scale.json] [--keep]

Builds (or brings up to date) the real index of ``../shared/k8s-docs`` +
``corpus/``, then for each size writes a synthetic index of whole copies of
it: every copy of a page gets new ids and a new path (``en/copy007/...``, so
the English and Chinese copies of a page still link), its BM25 tokens are
reused (no jieba over a million texts) and its vectors are the originals plus
random noise, renormalised (cosine ~0.95 to the original), not re-embedded.
The copies are written by ``kbqa.index.write_version``, the function a real
build ends with, and loaded by the real loader.

Per size: build seconds per stage, file sizes, recall@10 of the dense index
against exact search over the same vectors (dev questions and random chunk
vectors), cold load time and memory of a fresh process, in-process
``KnowledgeBase.search``/``ask`` latency over the dev questions, page-level
recall@5 of the dev questions, and the memory of two ``kbqa serve`` workers.
JSON goes to ``--out``, a Markdown table to stdout. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kbqa.config import Config  # noqa: E402

NOISE = 0.33  # norm of the noise added to a copy's unit vector: cosine ~0.95 to the original
COPY_PREFIX = "copy"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * (len(values) - 1)))], 2)


def memory(pid: int | str = "self") -> dict:
    """MiB from /proc/<pid>/smaps_rollup: resident, proportional, shared, private, anonymous."""
    d: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            d[parts[0][:-1]] = int(parts[1])
    mib = {k: round(v / 1024, 1) for k, v in d.items()}
    return {"rss": mib.get("Rss"), "pss": mib.get("Pss"),
            "shared": round(mib.get("Shared_Clean", 0) + mib.get("Shared_Dirty", 0), 1),
            "private": round(mib.get("Private_Clean", 0) + mib.get("Private_Dirty", 0), 1),
            "anonymous": mib.get("Anonymous")}


def questions(shared: Path) -> list[dict]:
    return [json.loads(line) for line in (shared / "eval" / "dev.jsonl").read_text(
        encoding="utf-8").splitlines() if line.strip()]


# --- the base index and its copies -----------------------------------------------


def base_index(work: Path, shared: Path) -> tuple[Path, dict]:
    """The real index of the docs and our corpus (kept in ``work``; incremental on reruns)."""
    from kbqa.kb import KnowledgeBase

    cfg = Config.from_env(env={}, index_dir=work / "base",
                          sources=(shared / "k8s-docs", ROOT / "corpus"))
    report = KnowledgeBase(cfg).build()
    print(f"base index: {report.summary()}", file=sys.stderr)
    return cfg.index_dir, {"chunks": report.chunks, "files": report.files,
                           "seconds": round(report.seconds, 2), "up_to_date": report.up_to_date}


def read_base(index_dir: Path) -> dict:
    from kbqa.index import current_version, exact_vectors, read_dense

    path = current_version(index_dir)
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    from kbqa.index import ChunkStore

    chunks = list(ChunkStore(path))
    cache = [json.loads(line) for line in
             (path / "build-chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    docs = json.loads((path / "build-docs.json").read_text(encoding="utf-8"))
    vectors = {e["name"]: exact_vectors(read_dense(path / e["file"])) for e in manifest["encoders"]}
    return {"path": path, "manifest": manifest, "chunks": chunks, "cache": cache,
            "docs": docs["docs"], "zipf": docs.get("zipf", {}), "vectors": vectors}


def copy_source(source: str, r: int) -> str:
    """en/concepts/x.md -> en/copy007/concepts/x.md: the language folder stays first."""
    parts = source.split("/")
    k = 1 if len(parts) > 1 and parts[0].lower() in ("en", "zh", "zh-cn") else 0
    return "/".join(parts[:k] + [f"{COPY_PREFIX}{r:03d}"] + parts[k:])


def replicate(base: dict, copies: int, seed: int = 0):
    """The base index and ``copies`` altered copies of it, in page order."""
    rng = np.random.default_rng(seed)
    chunks, cache = list(base["chunks"]), list(base["cache"])
    docs_out = dict(base["docs"])
    base_vecs = {k: v.astype(np.float32) for k, v in base["vectors"].items()}
    n0 = len(chunks)
    vectors = {k: np.empty(((copies + 1) * n0, v.shape[1]), dtype=np.float32)
               for k, v in base_vecs.items()}
    for k, v in base_vecs.items():
        vectors[k][:n0] = v
    for r in range(1, copies + 1):
        for c in base["chunks"]:
            source = copy_source(c.source, r)
            doc_id = f"{c.collection}:{source}"
            chunks.append(replace(c, id=f"{doc_id}#{c.ordinal}", doc_id=doc_id, source=source))
        cache.extend(base["cache"])  # the same token lists: no tokenising
        for doc_id, rec in base["docs"].items():
            coll, source = doc_id.split(":", 1)
            # Copies do not vote for glossary pairs: the glossary stays the docs' own.
            docs_out[f"{coll}:{copy_source(source, r)}"] = {**rec, "votes": [], "deps": {}}
        for k, v in base_vecs.items():
            noise = rng.standard_normal(v.shape, dtype=np.float32) * (NOISE / np.sqrt(v.shape[1]))
            block = v + noise
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            vectors[k][r * n0:(r + 1) * n0] = block
    votes: Counter = Counter()
    for doc_id in base["docs"]:
        for zh, en, v in base["docs"][doc_id].get("votes", []):
            votes[(zh, en)] += v
    return chunks, cache, vectors, docs_out, votes


def write_scaled(base: dict, copies: int, root: Path, **settings) -> tuple[dict, dict]:
    """Write the replicated index with the real writer; return timings and the vectors' info."""
    from kbqa.index import BuildLock, BuildReport, LogProgress, fingerprint, write_version

    t = time.perf_counter()
    chunks, cache, vectors, docs_out, votes = replicate(base, copies)
    replicate_s = time.perf_counter() - t
    cfg = Config.from_env(env={}, index_dir=root, **settings)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    report = BuildReport()
    t = time.perf_counter()
    with BuildLock(root):
        write_version(cfg, root, chunks, cache, vectors, docs_out, votes, dict(base["zipf"]),
                      base["manifest"]["sources"], fingerprint(cfg), report,
                      LogProgress(every=30.0))
    took = time.perf_counter() - t
    stages = {"replicate (instead of parse + tokenise + embed)": round(replicate_s, 1),
              **{k: round(v, 1) for k, v in report.detail.items()}}
    return {"chunks": len(chunks), "write_seconds": round(took, 1), "stages": stages}, vectors


def file_sizes(index_dir: Path) -> dict:
    from kbqa.index import current_version

    path = current_version(index_dir)
    groups = {"dense": ["dense-*.faiss"], "chunks": ["chunks*", "docs.json"],
              "bm25": ["bm25/*", "bm25-title/*"], "build cache": ["build-*"]}
    out = {}
    for name, pats in groups.items():
        out[name] = round(sum(p.stat().st_size for pat in pats for p in path.glob(pat)) / 2**20, 1)
    out["total"] = round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)
    return out


def dense_recall(index_dir: Path, vectors: np.ndarray, qs: list[dict], seed: int = 1) -> dict:
    """recall@10 of the index as written (mmap'd) vs exact search over the same vectors."""
    import faiss

    from kbqa.embed import get_embedder
    from kbqa.index import current_version, read_dense

    path = current_version(index_dir)
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    entry = manifest["encoders"][0]
    index = read_dense(path / entry["file"], entry.get("index"))
    q_dev = np.ascontiguousarray(get_embedder(entry["name"], 1, os.cpu_count()).encode(
        [q["question"] for q in qs], query=True), dtype=np.float32)
    rng = np.random.default_rng(seed)
    q_rand = vectors[rng.choice(len(vectors), 200, replace=False)]
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    out = {"index": entry.get("index", {"type": "flat"})}
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    for label, q in (("dev questions", q_dev), ("random chunks", q_rand)):
        _, truth = exact.search(q, 10)
        _, got = index.search(q, 10)
        out[f"recall@10 {label}"] = round(float(np.mean(
            [len(set(g) & set(t)) / 10 for g, t in zip(got, truth)])), 4)
    # One query at a time, one thread: how a server worker searches.
    faiss.omp_set_num_threads(1)
    for label, ix in (("exact", exact), ("index", index)):
        times = []
        for v in q_dev:
            t = time.perf_counter()
            ix.search(v[None, :], 50)
            times.append((time.perf_counter() - t) * 1000)
        out[f"{label} ms/query p50"] = pct(times, 0.5)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return out


def evict(index_dir: Path) -> None:
    """Drop this index's pages from the page cache (only its files): the next load is cold."""
    for p in index_dir.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# --- a fresh process: load, memory, latency, quality -------------------------------


def measure(index_dir: Path, shared: Path, repeat: int) -> dict:
    """Run in a child process: what a server process pays for this index."""
    t0 = time.perf_counter()
    from kbqa.kb import KnowledgeBase
    from kbqa.retrieve import chunk_page

    kb = KnowledgeBase(Config.from_env(env={}, index_dir=index_dir))
    base = memory()
    t = time.perf_counter()
    idx = kb.index
    load_s = time.perf_counter() - t
    loaded = memory()
    t = time.perf_counter()
    kb.warm()  # encoder and tokenizer loaded, two questions answered, faiss on one thread
    warm_s = time.perf_counter() - t
    first_answer_s = time.perf_counter() - t0
    qs = questions(shared)
    texts = [q["question"] for q in qs]
    # First pass: every question new (query vectors not cached), with page recall.
    first, strict, lenient = [], [], []
    stages: dict[str, list[float]] = {}
    for q in qs:
        t = time.perf_counter()
        res = kb.search(q["question"], top_k=10)
        first.append((time.perf_counter() - t) * 1000)
        for k, v in res.timings.items():
            stages.setdefault(k, []).append(v)
        gold = set(q.get("gold") or [])
        if gold:
            pages = [chunk_page(idx.chunks[h.index]) for h in res.hits[:5]]
            strict.append(any(p in gold for p in pages))
            lenient.append(any(_original_page(p) in gold for p in pages))
    lat = {"search_first_pass": _stats(first)}
    for label, fn in (("search", kb.search), ("ask", kb.ask)):
        times = []
        for _ in range(repeat):
            for q in texts:
                t = time.perf_counter()
                fn(q)
                times.append((time.perf_counter() - t) * 1000)
        lat[label] = _stats(times)
    after = memory()
    peak = _peak_rss()
    from kbqa.index import load_index

    t = time.perf_counter()
    load_index(index_dir)  # again, the files now in the page cache (as after a hot swap)
    load_cached_s = time.perf_counter() - t
    return {"load_index_s": round(load_s, 2), "load_index_cached_s": round(load_cached_s, 2),
            "warm_s": round(warm_s, 2),
            "process_start_to_first_answer_s": round(first_answer_s, 2),
            "memory_before_load_mib": base, "memory_loaded_mib": loaded,
            "memory_after_queries_mib": after, "peak_rss_mib": peak,
            "latency_ms": lat,
            "stages_p50_ms": {k: round(statistics.median(v), 2) for k, v in stages.items()},
            "page_recall@5": round(sum(strict) / len(strict), 4),
            "page_recall@5_copies_count": round(sum(lenient) / len(lenient), 4),
            "questions": len(qs), "in_domain": len(strict)}


def _original_page(page: str) -> str:
    head, _, rest = page.partition("/")
    return rest if head.startswith(COPY_PREFIX) and head[len(COPY_PREFIX):].isdigit() else page


def _stats(times: list[float]) -> dict:
    return {"n": len(times), "p50_ms": pct(times, 0.5), "p95_ms": pct(times, 0.95),
            "p99_ms": pct(times, 0.99)}


def _peak_rss() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def measure_in_child(index_dir: Path, shared: Path, repeat: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
    r = subprocess.run([sys.executable, __file__, "--measure", str(index_dir), "--shared",
                        str(shared), "--repeat", str(repeat)], capture_output=True, text=True,
                       env=env, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"measuring {index_dir} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def serve_workers(index_dir: Path, shared: Path, workers: int = 2) -> dict:
    """`kbqa serve --workers N` over the index: each worker's memory after answering queries.

    Two clients (one connection each) send the dev questions twice, so both
    workers answer; then /proc/<pid>/smaps_rollup of the master and workers.
    """
    import threading

    from serve_bench import Client, children, free_port, start

    port = free_port()
    proc, cold = start(index_dir, port, workers)
    try:
        times: list[float] = []
        errors = [0]

        def run() -> None:
            client = Client(port)
            for _ in range(2):
                for q in questions(shared):
                    status, ms, _ = client.query(q["question"])
                    times.append(ms)
                    errors[0] += status != 200

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pids = children(proc.pid)
        return {"workers": workers, "start_to_first_answer_s": cold, "errors": errors[0],
                "requests": len(times), "http_2_clients": _stats(times),
                "master_mib": memory(proc.pid), "workers_mib": [memory(p) for p in pids]}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- report ---------------------------------------------------------------------------


def table(result: dict) -> str:
    lines = ["| chunks | dense index | build s | files MiB | recall@10 vs exact (dev / random) | "
             "exact / index ms per dense query | load s | worker RSS / PSS / private MiB | "
             "search p50 / p95 / p99 ms | ask p50 / p95 / p99 ms | page recall@5 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["sizes"]:
        d, m = row["dense"], row["process"]
        info = d["index"]
        kind = info["type"] if info["type"] == "flat" else \
            f"IVF{info['nlist']},SQ8 + refine (nprobe {info['nprobe']})"
        ws = row.get("serve", {}).get("workers_mib") or []
        worker = " ; ".join(f"{w['rss']:.0f} / {w['pss']:.0f} / {w['private']:.0f}" for w in ws)
        s, a = m["latency_ms"]["search"], m["latency_ms"]["ask"]
        lines.append(
            f"| {row['build']['chunks']:,} | {kind} | {_n(row['build']['write_seconds'])} | "
            f"{row['files_mib']['total']:.0f} | {d['recall@10 dev questions']:.3f} / "
            f"{d['recall@10 random chunks']:.3f} | {d['exact ms/query p50']:.1f} / "
            f"{d['index ms/query p50']:.1f} | {m['load_index_s']:.2f} | {worker or '–'} | "
            f"{s['p50_ms']:.1f} / {s['p95_ms']:.1f} / {s['p99_ms']:.1f} | "
            f"{a['p50_ms']:.1f} / {a['p95_ms']:.1f} / {a['p99_ms']:.1f} | "
            f"{m['page_recall@5']:.3f} |")
    return "\n".join(lines)


def _n(v) -> str:
    return "–" if v is None else f"{v:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000",
                    help="approximate chunk counts, comma-separated")
    ap.add_argument("--work", type=Path, default=Path("/tmp/kbqa-scale"))
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the synthetic indexes")
    ap.add_argument("--exact-max", type=int, default=None,
                    help="exact_search_max_vectors for the synthetic indexes (default: config)")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child process mode
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.shared, args.repeat)))
        return

    from run import machine

    args.work.mkdir(parents=True, exist_ok=True)
    base_dir, base_info = base_index(args.work, args.shared)
    base = read_base(base_dir)
    n0 = len(base["chunks"])
    qs = questions(args.shared)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
              "command": "benchmarks/scale.py " + " ".join(sys.argv[1:]),
              "base": base_info, "noise": NOISE, "sizes": []}
    # The base index itself, measured the same way.
    result["sizes"].append(measure_size(base_dir, {
        "chunks": n0, "write_seconds": None if base_info["up_to_date"] else base_info["seconds"],
        "stages": {}}, base["vectors"], qs, args))
    print(table(result), file=sys.stderr)
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        copies = max(1, round(size / n0) - 1)
        root = args.work / f"x{copies + 1}"
        print(f"\n== {n0 * (copies + 1):,} chunks ({copies} copies) -> {root}", file=sys.stderr)
        built, vectors = write_scaled(base, copies, root,
                                      exact_search_max_vectors=args.exact_max)
        print(f"written in {built['write_seconds']} s: {built['stages']}", file=sys.stderr)
        result["sizes"].append(measure_size(root, built, vectors, qs, args))
        del vectors
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
        print(table(result), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    print(f"## kbqa at scale — {result['date']}, {result['machine']['cpu']}, "
          f"{result['machine']['cores']} cores\n")
    print(table(result))
    print(f"\nJSON: {args.out}")


def measure_size(index_dir: Path, built: dict, vectors: dict[str, np.ndarray],
                 qs: list[dict], args: argparse.Namespace) -> dict:
    """Everything measured for one index: files, dense recall, a fresh process, two workers."""
    row = {"build": built, "files_mib": file_sizes(index_dir)}
    print(f"dense recall and speed ({index_dir.name})", file=sys.stderr)
    row["dense"] = dense_recall(index_dir, next(iter(vectors.values())), qs)
    evict(index_dir)
    print(f"fresh process: cold load, latency ({index_dir.name})", file=sys.stderr)
    row["process"] = measure_in_child(index_dir, args.shared, args.repeat)
    print(f"kbqa serve --workers 2 ({index_dir.name})", file=sys.stderr)
    row["serve"] = serve_workers(index_dir, args.shared)
    return row


if __name__ == "__main__":
    main()
