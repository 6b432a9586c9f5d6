"""kbqa benchmark: index build times, retrieval quality and query latency.

    .venv/bin/python benchmarks/run.py [--shared ../shared] [--out benchmarks/results/latest.json]

Prints Markdown tables and writes every number as JSON. Nothing here is
asserted: numbers are measured and reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kbqa.config import Config  # noqa: E402
from kbqa.evaluate import evaluate, format_table, load_questions  # noqa: E402
from kbqa.kb import KnowledgeBase  # noqa: E402


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) // 1024 // 1024 for line in open("/proc/meminfo")
                if line.startswith("MemTotal")), 0)
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": mem, "python": platform.python_version()}


def build(name: str, sources: list[Path], encoders: tuple[str, ...], work: Path) -> tuple[KnowledgeBase, dict]:
    cfg = Config.from_env(env={}, index_dir=work / name, sources=tuple(sources), encoders=encoders)
    kb = KnowledgeBase(cfg)
    report = kb.build()
    row = {"index": name, "encoders": list(encoders), "files": report.files, "chunks": report.chunks,
           "seconds": round(report.seconds, 2),
           "stages": {k: round(v, 2) for k, v in report.stages.items()}}
    print(f"built {name}: {report.summary()}", file=sys.stderr)
    return kb, row


def latency(kb: KnowledgeBase, questions: list[str], repeat: int = 3) -> dict:
    for q in questions[:3]:
        kb.ask(q)  # warm: models loaded, caches filled
    out = {}
    for label, fn in (("search", lambda q: kb.search(q)), ("ask", lambda q: kb.ask(q))):
        times = []
        for _ in range(repeat):
            for q in questions:
                t = time.perf_counter()
                fn(q)
                times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out[label] = {"n": len(times), "p50_ms": round(statistics.median(times), 2),
                      "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
                      "p99_ms": round(times[int(0.99 * (len(times) - 1))], 2)}
    return out


def _touch_page(src: Path, n: int) -> str:
    """Append a sentence to one mid-sized English page (the "one page changed" case)."""
    pages = sorted(p for p in src.rglob("*.md") if "en" in p.relative_to(src).parts[:1]
                   and 2000 < p.stat().st_size < 20000)
    page = pages[len(pages) // 2]
    with open(page, "a", encoding="utf-8") as fh:
        fh.write(f"\nBenchmark edit {n}: one more sentence, so that this page changes.\n")
    return page.relative_to(src).as_posix()


def incremental_builds(sources: dict[str, Path], work: Path) -> list[dict]:
    """Full build, then one changed page re-indexed: in process (warm, as the admin
    endpoint does it) and as a fresh `kbqa index` process (cold: imports, jieba's
    dictionary and the model load included). Works on copies; never writes to sources."""
    import re
    import shutil
    import subprocess

    rows = []
    for name, source in sources.items():
        src = work / f"src-{name}" / source.name
        shutil.copytree(source, src)
        cfg = Config.from_env(env={}, index_dir=work / f"idx-{name}", sources=(src,))
        kb = KnowledgeBase(cfg)
        full = kb.build(full=True)
        page = _touch_page(src, 1)
        warm = kb.build()
        _touch_page(src, 2)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "kbqa.cli", "index", "--source", str(src),
                              "--index-dir", str(cfg.index_dir)], capture_output=True, text=True,
                             env=env, cwd=ROOT, check=True)
        cold_wall = time.perf_counter() - t
        reported = re.search(r"; ([0-9.]+)s$", out.stdout.strip().splitlines()[-1])
        row = {"index": name, "files": full.files, "chunks": full.chunks, "changed_page": page,
               "full_seconds": round(full.seconds, 2),
               "full_stages": {k: round(v, 2) for k, v in {**full.stages, **full.detail}.items()},
               "incremental_seconds": round(warm.seconds, 2),
               "incremental_stages": {k: round(v, 3)
                                      for k, v in {**warm.stages, **warm.detail}.items()},
               "incremental_embedded": warm.embedded, "incremental_reused": warm.reused,
               "speedup": round(full.seconds / max(warm.seconds, 1e-9), 1),
               "cli_cold_wall_seconds": round(cold_wall, 2),
               "cli_cold_build_seconds": float(reported.group(1)) if reported else None}
        print(f"{name}: full {row['full_seconds']}s, one page changed {row['incremental_seconds']}s "
              f"in process ({row['speedup']}x), {row['cli_cold_wall_seconds']}s as a new "
              "`kbqa index` process", file=sys.stderr)
        rows.append(row)
    return rows


def print_incremental(rows: list[dict]) -> None:
    print("\n| index | files | chunks | full build s | one page changed s (in process) | speed-up "
          "| `kbqa index` process s (wall) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['index']} | {r['files']} | {r['chunks']} | {r['full_seconds']} | "
              f"{r['incremental_seconds']} | {r['speedup']}x | {r['cli_cold_wall_seconds']} |")
    for r in rows:
        stages = ", ".join(f"{k} {v}" for k, v in r["incremental_stages"].items())
        print(f"\n{r['index']} incremental stages (s): {stages}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json")
    ap.add_argument("--no-compare", action="store_true", help="skip the MiniLM comparison build")
    ap.add_argument("--builds-only", action="store_true",
                    help="only the full vs incremental build timings")
    args = ap.parse_args()
    if args.builds_only:
        with tempfile.TemporaryDirectory() as tmp:
            rows = incremental_builds({"corpus": ROOT / "corpus",
                                       "k8s-docs": args.shared / "k8s-docs"}, Path(tmp))
        out = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "incremental": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_name("incremental.json").write_text(json.dumps(out, indent=1))
        print_incremental(rows)
        return
    docs, dev = args.shared / "k8s-docs", args.shared / "eval" / "dev.jsonl"
    questions = load_questions(dev)
    result: dict = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "builds": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        kb, row = build("corpus", [ROOT / "corpus"], ("use",), work)
        result["builds"].append(row)
        kb, row = build("k8s-docs", [docs], ("use",), work)
        result["builds"].append(row)
        kb, row = build("k8s-docs+corpus", [docs, ROOT / "corpus"], ("use",), work)
        result["builds"].append(row)
        result["latency_in_process"] = latency(kb, [q["question"] for q in questions])
        result["eval_default"] = {k: v for k, v in evaluate(kb, questions).items() if k != "rows"}
        # Cross-language: one language of the docs indexed, the other language asked.
        result["cross_language"] = {}
        for folder, asked in (("en", "zh"), ("zh-cn", "en")):
            kbx, row = build(f"k8s-docs/{folder}", [docs / folder], ("use",), work)
            result["builds"].append(row)
            qs = [q for q in questions if q.get("lang") == asked]
            res = evaluate(kbx, qs)
            result["cross_language"][f"{asked} questions -> {folder} index"] = res["overall"]
        if not args.no_compare:
            kb2, row = build("k8s-docs+corpus (use+minilm)", [docs, ROOT / "corpus"],
                             ("use", "minilm"), work)
            result["builds"].append(row)
            runs = {"bm25": evaluate(kb2, questions, mode="bm25")}
            for enc in ("use-multilingual-v3", "all-MiniLM-L6-v2"):
                runs[f"dense {enc}"] = evaluate(kb2, questions, mode="dense", encoders=(enc,))
                runs[f"hybrid bm25+{enc}"] = evaluate(kb2, questions, mode="hybrid", encoders=(enc,))
            runs["hybrid bm25+use+minilm"] = evaluate(
                kb2, questions, mode="hybrid", encoders=("use-multilingual-v3", "all-MiniLM-L6-v2"))
            result["eval_compare"] = {name: {k: v for k, v in r.items() if k != "rows"}
                                      for name, r in runs.items()}
        result["incremental"] = incremental_builds({"corpus": ROOT / "corpus", "k8s-docs": docs},
                                                   work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    print(f"## kbqa benchmark {result['date']} ({result['machine']['cpu']}, "
          f"{result['machine']['cores']} cores)\n")
    print("| index | files | chunks | seconds | parse | segment | embed | index |\n|---|---|---|---|---|---|---|---|")
    for b in result["builds"]:
        s = b["stages"]
        print(f"| {b['index']} | {b['files']} | {b['chunks']} | {b['seconds']} | {s.get('parse')} | "
              f"{s.get('segment')} | {s.get('embed')} | {s.get('index')} |")
    lat = result["latency_in_process"]
    print("\n| in process (k8s-docs+corpus) | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|")
    for k, v in lat.items():
        print(f"| {k} | {v['p50_ms']} | {v['p95_ms']} | {v['p99_ms']} |")
    print("\n| cross-language | recall@1 | recall@5 | mrr@10 | in-domain refused |\n|---|---|---|---|---|")
    for k, v in result["cross_language"].items():
        print(f"| {k} | {v['recall@1']} | {v['recall@5']} | {v['mrr@10']} | {v['in_domain_refused']} |")
    print()
    print(format_table(result.get("eval_compare") or {"default": result["eval_default"]}))
    print_incremental(result["incremental"])
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
