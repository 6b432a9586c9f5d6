"""Render the README's benchmark tables from the benchmark JSON files.

    .venv/bin/python benchmarks/report.py            # print the tables
    .venv/bin/python benchmarks/report.py --write    # replace them in README.md

The README keeps each table between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` markers, so numbers in it always come from a run.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _f(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


PEER_RUN = "chatchat ensemble (bm25+faiss 0.5/0.5)"
PEER_CROSS = {"zh questions -> en index": "k8s-docs/en", "en questions -> zh-cn index": "k8s-docs/zh-cn"}

LABELS = {
    "bm25": "BM25 (body + title fields, + glossary expansion)",
    "dense use-multilingual-v3": "dense USE",
    "hybrid bm25+use-multilingual-v3": "**hybrid BM25 + USE (default)**",
    "dense all-MiniLM-L6-v2": "dense MiniLM",
    "hybrid bm25+all-MiniLM-L6-v2": "hybrid BM25 + MiniLM",
    "hybrid bm25+use+minilm": "hybrid BM25 + USE + MiniLM",
}


def quality(latest: dict, peer: dict | None) -> str:
    cols = ["recall@1", "recall@5", "mrr@10", "answer_hit", "ood_refused", "in_domain_refused"]
    lines = ["| config | slice | recall@1 | recall@5 | MRR@10 | answer hit | OOD refused | "
             "in-domain refused |", "|---|---|---|---|---|---|---|---|"]
    runs = latest.get("eval_compare") or {"hybrid bm25+use-multilingual-v3": latest["eval_default"]}
    for name, res in runs.items():
        for k, slice_name in enumerate(("overall", "zh", "en")):
            s = res[slice_name]
            label = LABELS.get(name, name) if k == 0 else ""
            lines.append(f"| {label} | {slice_name} | " + " | ".join(_f(s.get(c)) for c in cols) + " |")
    if peer:
        for k, slice_name in enumerate(("overall", "zh", "en")):
            s = peer["eval"][PEER_RUN][slice_name]
            label = "Langchain-Chatchat 0.3 peer (same encoder)" if k == 0 else ""
            lines.append(f"| {label} | {slice_name} | {_f(s['recall@1'])} | {_f(s['recall@5'])} | "
                         f"{_f(s['mrr@10'])} | – | {_f(s.get('ood_refused'))} | – |")
    return "\n".join(lines)


def answers(latest: dict) -> str:
    d = latest["eval_default"]
    lines = ["| slice | answer hit | sentences cited | in the asker's language | mean answer length (chars) |",
             "|---|---|---|---|---|"]
    for slice_name in ("overall", "zh", "en"):
        s = d[slice_name]
        lines.append(f"| {slice_name} | {_f(s.get('answer_hit'))} | {_f(s.get('cited'))} | "
                     f"{_f(s.get('in_language'))} | {_f(s.get('answer_chars'), 0)} |")
    return "\n".join(lines)


def cross(latest: dict, peer: dict | None) -> str:
    lines = ["| cross-language (one language indexed, the other asked) | kbqa recall@1 | "
             "kbqa recall@5 | kbqa MRR@10 | peer recall@5 | peer MRR@10 |",
             "|---|---|---|---|---|---|"]
    for name, s in latest.get("cross_language", {}).items():
        p = next((x for x in (peer or {}).get("cross_language", [])
                  if x["index"] == PEER_CROSS.get(name)), {})
        lines.append(f"| {name} | {_f(s['recall@1'])} | {_f(s['recall@5'])} | {_f(s['mrr@10'])} | "
                     f"{_f(p.get('recall@5'))} | {_f(p.get('mrr@10'))} |")
    return "\n".join(lines)


def builds(latest: dict) -> str:
    lines = ["| index | files | chunks | seconds | parse | segment | embed | index |",
             "|---|---|---|---|---|---|---|---|"]
    for b in latest["builds"]:
        s = b["stages"]
        lines.append(f"| {b['index']} | {b['files']} | {b['chunks']} | {b['seconds']} | "
                     f"{s.get('parse')} | {s.get('segment')} | {s.get('embed')} | {s.get('index')} |")
    return "\n".join(lines)


def latency(latest: dict, peer: dict | None) -> str:
    lines = ["| in process, k8s-docs + corpus | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|"]
    for k, v in latest["latency_in_process"].items():
        lines.append(f"| kbqa `{k}` | {v['p50_ms']} | {v['p95_ms']} | {v['p99_ms']} |")
    if peer and "latency_in_process" in peer:
        v = peer["latency_in_process"]
        lines.append(f"| Chatchat peer retrieval | {v['p50_ms']} | {v['p95_ms']} | {v.get('p99_ms', '–')} |")
    return "\n".join(lines)


def load(data: dict) -> str:
    s, k = data.get("sustained", {}), data.get("kill_worker", {})
    lines = ["| load test (`make test-load`, gunicorn 2 workers, 16 clients) | value |", "|---|---|"]
    if s:
        lines += [f"| duration, requests, requests/s | {s['seconds']:.0f} s, {s['requests']}, {s['rps']} |",
                  f"| responses by status | {s['status']} (connection failures: {s['failed_connections']}) |",
                  f"| latency p50 / p95 / p99 | {s['p50_ms']} / {s['p95_ms']} / {s['p99_ms']} ms |",
                  f"| re-index + hot swap during the run | {s['version_before']} → {s['version_after']} |",
                  f"| worker RSS at start → end (MiB) | {s['rss_start_mib']} → {s['rss_end_mib']} |"]
    if k:
        lines.append(f"| worker killed (SIGKILL) under load | replaced; {k['failed_after_kill']} requests "
                     f"failed of {k['requests']} |")
    return "\n".join(lines)


def serve(data: dict) -> str:
    lines = ["| `/api/query` over HTTP | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|"]
    for key, label in (("latency_first_pass", "each dev question once (nothing cached)"),
                       ("latency_warm", "dev questions × 3, warm")):
        v = data[key]
        lines.append(f"| {label} | {v['p50_ms']} | {v['p95_ms']} | {v['p99_ms']} |")
    lines += ["", "| concurrent clients | requests/s | errors | p50 ms | p95 ms |", "|---|---|---|---|---|"]
    for t in data["throughput"]:
        lines.append(f"| {t['clients']} | {t['rps']} | {t['errors']} | {t['p50_ms']} | {t['p95_ms']} |")
    rss = data["rss_peak_mib"]
    lines += ["", f"Cold start (process start to first answer, index on disk): {data['cold_start_s']} s. "
              f"Peak RSS: master {rss['master']} MiB, workers {rss['workers']} MiB, of which "
              f"{data['shared_mib']['workers']} MiB shared (loaded before the fork). Server-side "
              f"stages, p50 ms: " + ", ".join(f"{k} {v}" for k, v in
                                              data["latency_warm"]["server_stages_p50_ms"].items()) + "."]
    return "\n".join(lines)


def scale(data: dict) -> str:
    """benchmarks/scale.py: one column per index size, one row per measurement."""
    rows = data["sizes"]

    def dense(r: dict) -> str:
        i = r["dense"]["index"]
        return "exact (flat)" if i["type"] == "flat" else \
            f"IVF {i['nlist']} lists, SQ8, {i['nprobe']} probed, exact re-rank"

    def lat(r: dict, key: str) -> str:
        v = r["process"]["latency_ms"][key]
        return f"{v['p50_ms']:.1f} / {v['p95_ms']:.1f} / {v['p99_ms']:.1f}"

    def workers(r: dict) -> str:
        return "<br>".join(f"{w['rss']:.0f} / {w['pss']:.0f} / {w['anonymous']:.0f}"
                           for w in r["serve"]["workers_mib"])

    def stages(r: dict) -> str:
        st = r["process"]["stages_p50_ms"]
        pick = [next((v for k, v in st.items() if k.startswith(p)), None)
                for p in ("embed", "dense", "lexical", "fuse")]
        return " / ".join(_f(v, 1) for v in pick)

    def built(r: dict) -> str:
        w = r["build"]["write_seconds"]
        return "(real build)" if w is None else f"{w:.0f}"

    def mem(r: dict) -> str:
        a, b = r["process"]["memory_loaded_mib"], r["process"]["memory_after_queries_mib"]
        return f"{a['rss']:.0f} → {b['rss']:.0f} ({b['anonymous']:.0f})"

    table = [
        ("dense index", dense),
        ("write the index, s (copies: no parsing or embedding)", built),
        ("index files, MiB", lambda r: f"{r['files_mib']['total']:,.0f}"),
        ("dense recall@10 vs exact: dev questions / random chunks",
         lambda r: f"{r['dense']['recall@10 dev questions']:.3f} / "
                   f"{r['dense']['recall@10 random chunks']:.3f}"),
        ("dense search, ms per query: exact scan / this index",
         lambda r: f"{r['dense']['exact ms/query p50']:.1f} / {r['dense']['index ms/query p50']:.1f}"),
        ("load the index, s: cold / files in page cache",
         lambda r: f"{r['process']['load_index_s']:.2f} / {r['process']['load_index_cached_s']:.2f}"),
        ("process start to first answer, s",
         lambda r: f"{r['process']['process_start_to_first_answer_s']:.1f}"),
        ("one process RSS, MiB: loaded → after 308 searches and answers (anonymous)", mem),
        ("`search` p50 / p95 / p99 ms", lambda r: lat(r, "search")),
        ("`ask` p50 / p95 / p99 ms", lambda r: lat(r, "ask")),
        ("stages p50 ms: embed / dense / lexical / fuse", stages),
        ("page recall@5, dev questions: original page / original or a copy",
         lambda r: f"{r['process']['page_recall@5']:.3f} / "
                   f"{r['process']['page_recall@5_copies_count']:.3f}"),
        ("`kbqa serve --workers 2`, each worker after 176 requests from two clients: "
         "RSS / PSS / anonymous MiB",
         workers),
    ]
    head = "| chunks | " + " | ".join(f"{r['build']['chunks']:,}" for r in rows) + " |"
    lines = [head, "|---|" + "---|" * len(rows)]
    for label, fn in table:
        lines.append(f"| {label} | " + " | ".join(fn(r) for r in rows) + " |")
    m = data["machine"]
    lines += ["", f"Measured {data['date']} on {m['cpu']} ({m['cores']} cores, {m['mem_gib']} GiB) "
              f"with `.venv/bin/python {data['command']}`."]
    return "\n".join(lines)


def machine_line(latest: dict) -> str:
    m = latest["machine"]
    return (f"Measured {latest['date']} on {m['cpu']} ({m['cores']} cores, {m['mem_gib']} GiB, "
            f"Python {m['python']}, no GPU).")


def tables() -> dict[str, str]:
    latest = json.loads((RESULTS / "latest.json").read_text())
    peer_file = RESULTS / "chatchat_peer.json"
    peer = json.loads(peer_file.read_text()) if peer_file.exists() else None
    load_file = RESULTS / "load.json"
    extra = {"load": load(json.loads(load_file.read_text()))} if load_file.exists() else {}
    serve_file = RESULTS / "serve.json"
    if serve_file.exists():
        extra["serve"] = serve(json.loads(serve_file.read_text()))
    scale_file = RESULTS / "scale.json"
    if scale_file.exists():
        extra["scale"] = scale(json.loads(scale_file.read_text()))
    return {**extra, "machine": machine_line(latest), "quality": quality(latest, peer),
            "answers": answers(latest), "cross": cross(latest, peer), "builds": builds(latest),
            "latency": latency(latest, peer)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="replace the marked tables in README.md")
    args = ap.parse_args()
    out = tables()
    if not args.write:
        for name, text in out.items():
            print(f"<!-- bench:{name} -->\n{text}\n<!-- /bench:{name} -->\n")
        return
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    for name, table in out.items():
        pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.S)
        text, n = pattern.subn(lambda m: m.group(1) + table + "\n" + m.group(2), text)
        if not n:
            print(f"README.md has no <!-- bench:{name} --> block; left out")
    readme.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
