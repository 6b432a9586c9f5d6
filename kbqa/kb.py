"""The KnowledgeBase facade: the one object the CLI and the web app talk to."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import quote

from kbqa import answer as answer_mod
from kbqa.answer import is_definition
from kbqa.config import Config
from kbqa.embed import get_embedder
from kbqa.index import (BuildReport, IndexError_, LiveIndex, LoadedIndex, Progress,
                        build_index)
from kbqa.glossary import translate_terms
from kbqa.retrieve import (MODES, Hit, SearchResult, collapse_linked, decide_found,
                           dense_search, domain_words, lexical_search, question_lang, rrf,
                           to_simplified)
from kbqa.segment import Chunk, tokenize


class QueryError(ValueError):
    """Bad input to search/ask; ``code`` is the machine-readable reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def canonical_url(chunk: Chunk) -> str | None:
    """kubernetes.io URL for a page of the official docs, else the article page here."""
    parts = chunk.source.split("/")
    anchor = f"#{quote(chunk.anchor)}" if chunk.anchor else ""
    if len(parts) >= 3 and parts[0] in ("en", "zh-cn"):
        path = "/".join(parts[1:])
        path = path[: -len(".md")] if path.endswith(".md") else path
        if path.endswith("_index"):
            path = path[: -len("_index")]
        path = path.strip("/")
        prefix = "" if parts[0] == "en" else "zh-cn/"
        return f"https://kubernetes.io/{prefix}docs/{path}/{anchor}".replace("//#", "/#")
    return f"/articles/{quote(chunk.collection)}/{quote(chunk.source)}{anchor}"


class KnowledgeBase:
    def __init__(self, config: Config | None = None):
        self.config = config or Config.from_env()
        # The index in use, swapped for newer versions between web requests.
        self.live = LiveIndex(self.config.index_dir)
        self._embedders: dict = {}
        self._lock = threading.Lock()

    # --- index -------------------------------------------------------------
    def build(self, sources: list[Path] | None = None, full: bool = False,
              progress: Progress | None = None) -> BuildReport:
        """Bring the index up to date (incrementally unless ``full``); see index.build_index."""
        report = build_index(self.config, sources, full=full, progress=progress)
        if not report.up_to_date:
            self.live.invalidate()  # the next query uses the new version
        return report

    @property
    def index(self) -> LoadedIndex:
        """The loaded index; within a web request always the same version (see LiveIndex)."""
        return self.live.get()

    def stats(self) -> dict:
        m = self.index.manifest
        return {"documents": m["documents"], "chunks": m["chunks"],
                "models": [e["name"] for e in m["encoders"]], "built_at": m["built_at"],
                "version": self.index.path.name, "kbqa_version": m["kbqa_version"]}

    def embedder(self, name: str):
        if name not in self._embedders:
            self._embedders[name] = get_embedder(name, self.config.query_threads,
                                                 self.config.build_threads)
        return self._embedders[name]

    # --- query -------------------------------------------------------------
    def _check(self, question, top_k) -> tuple[str, int]:
        if not isinstance(question, str):
            raise QueryError("invalid_question", "question must be a string")
        question = "".join(ch for ch in question if ch.isprintable() or ch in "\n\t").strip()
        if not question:
            raise QueryError("empty_question", "question is empty; ask something, e.g. "
                                               "\"etcd 的作用是什么？\"")
        if len(question) > self.config.max_question_chars:
            raise QueryError("question_too_long",
                             f"question is longer than {self.config.max_question_chars} characters")
        if top_k is None:
            top_k = self.config.default_top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise QueryError("invalid_top_k", "top_k must be an integer")
        if not 1 <= top_k <= self.config.max_top_k:
            raise QueryError("invalid_top_k", f"top_k must be between 1 and {self.config.max_top_k}")
        return question, top_k

    def search(self, question: str, top_k: int | None = None, mode: str | None = None,
               encoders: tuple[str, ...] | None = None) -> SearchResult:
        question, top_k = self._check(question, top_k)
        question = to_simplified(question)
        cfg = self.config
        mode = mode or cfg.mode
        if mode not in MODES:
            raise QueryError("invalid_mode", f"mode must be one of {', '.join(MODES)}")
        idx = self.index
        names = list(encoders or [e["name"] for e in idx.manifest["encoders"]][:1])
        timings: dict[str, float] = {}
        lists: dict[str, list[tuple[int, float]]] = {}
        weights: dict[str, float] = {}
        best_dense = 0.0
        translated = translate_terms(question, idx.glossary)
        if mode in ("hybrid", "dense"):
            for name in names:
                t = time.perf_counter()
                qvec = self.embedder(name).encode([question], query=True)[0]
                timings[f"embed_{name}"] = _ms(t)
                t = time.perf_counter()
                lists[name] = dense_search(idx, name, qvec, cfg.candidates)
                timings[f"dense_{name}"] = _ms(t)
                weights[name] = cfg.dense_weight / len(names)
                if lists[name]:
                    best_dense = max(best_dense, lists[name][0][1])
        if mode in ("hybrid", "bm25"):
            t = time.perf_counter()
            self._lexical_lists(question, translated, lists, weights)
            timings["lexical"] = _ms(t)
        t = time.perf_counter()
        hits = rrf(lists, weights, cfg.rrf_k)
        if cfg.collapse_languages:
            hits = collapse_linked(hits, idx.links, idx.chunks, question_lang(question))
        hits = hits[:top_k]
        timings["fuse"] = _ms(t)
        # Key words in either language: an English question over Chinese pages
        # shows its domain through the glossary's translations.
        terms = domain_words(question, translated, idx.lexicon)
        strong = cfg.strong_dense_score
        if strong is None:
            strong = idx.manifest["abstention"]["strong_dense"]
        if mode == "bm25":
            found = bool(hits) and bool(terms)
        else:
            found = bool(hits) and decide_found(best_dense, bool(terms), cfg.min_dense_score, strong)
        return SearchResult(hits=hits, found=found, timings=timings)

    def _lexical_lists(self, question: str, translated: list[str], lists: dict,
                       weights: dict) -> None:
        """BM25 over text and titles, plus the same in the other language."""
        cfg, idx = self.config, self.index
        qtokens = tokenize(question)
        same_share = 1.0
        if cfg.cross_weight > 0 and translated:
            # The lexical side cannot see across languages by itself. The query
            # in the other language is the glossary's translations plus the
            # words both languages share (names such as Pod or kubeadm),
            # matched against the other language's passages only.
            cross = tokenize(" ".join(translated)) + [t for t in qtokens if t.isascii()]
            other = "en" if question_lang(question) == "zh" else "zh"
            for name, bm in (("cross", idx.bm25), ("cross_title", idx.bm25_title)):
                lists[name] = [(i, sc) for i, sc in lexical_search(bm, cross, cfg.candidates * 2)
                               if idx.chunks[i].lang == other][: cfg.candidates]
            # Each side counts as much as the index is in its language: all of
            # the cross side for an English-only index, full weight for the
            # question's own words from half of the index up.
            share = idx.lang_share.get(other, 0.0)
            weights["cross"] = weights["cross_title"] = cfg.cross_weight * share
            same_share = min(1.0, 2 * (1.0 - share))
        lists["bm25"] = lexical_search(idx.bm25, qtokens, cfg.candidates)
        weights["bm25"] = cfg.lexical_weight * same_share
        if cfg.title_weight > 0:
            lists["title"] = lexical_search(idx.bm25_title, qtokens, cfg.candidates)
            weights["title"] = cfg.title_weight * same_share
            if is_definition(question):
                # "What is X": the opening of X's own page is the answer.
                lists["lead"] = [(i, s) for i, s in lists["title"] if idx.chunks[i].ordinal == 0]
                weights["lead"] = cfg.title_weight * same_share

    def passage(self, hit: Hit) -> dict:
        c = self.index.chunks[hit.index]
        return {"id": c.id, "source": c.source, "collection": c.collection, "lang": c.lang,
                "title": c.title, "heading": c.heading, "text": c.text,
                "score": round(hit.score, 6), "url": canonical_url(c)}

    def ask(self, question: str, top_k: int | None = None, mode: str | None = None,
            encoders: tuple[str, ...] | None = None) -> dict:
        t0 = time.perf_counter()
        question, top_k = self._check(question, top_k)
        question = to_simplified(question)  # the answer's sentences are scored against it
        lang = question_lang(question)
        result = self.search(question, top_k, mode=mode, encoders=encoders)
        if result.found:
            passages = [self.index.chunks[h.index] for h in result.hits]
            t = time.perf_counter()
            text = answer_mod.compose(question, lang, passages)
            result.timings["compose"] = _ms(t)
            out_passages = [self.passage(h) for h in result.hits]
        else:
            text = answer_mod.compose_not_found(lang, [])
            out_passages = []
        return {"answer": text, "answer_html": answer_mod.render_html(text), "found": result.found,
                "lang": lang, "passages": out_passages, "timings": result.timings,
                "took_ms": _ms(t0)}

    def article(self, collection: str, source: str) -> dict | None:
        """The whole cleaned article behind a passage (only pages in the index)."""
        idx = self.index
        doc_id = f"{collection}:{source}"
        if doc_id not in idx.manifest["files"]:
            return None
        root = next((Path(s["path"]) for s in idx.manifest["sources"]
                     if s["collection"] == collection), None)
        if root is None:
            return None
        from kbqa.ingest import IngestError, parse_page

        try:
            doc = parse_page((root / source).read_bytes(), collection, source)
        except (OSError, IngestError):
            return None
        return {"title": doc.title, "lang": doc.lang, "markdown": doc.body,
                "html": answer_mod.render_html(doc.body, heading_ids=True)}


def _ms(t: float) -> float:
    return round((time.perf_counter() - t) * 1000, 3)


__all__ = ["KnowledgeBase", "QueryError", "IndexError_", "canonical_url"]
