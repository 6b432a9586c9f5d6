"""The KnowledgeBase facade: the one object the CLI and the web app talk to."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from kbqa import answer as answer_mod
from kbqa.answer import is_definition
from kbqa.config import Config
from kbqa.embed import get_embedder
from kbqa.index import (BuildReport, IndexError_, LiveIndex, LoadedIndex, Progress,
                        build_index)
from kbqa.followup import resolve as resolve_followup
from kbqa.glossary import NAMES, canonical_names, translate_terms
from kbqa.retrieve import (MODES, Hit, SearchResult, chunk_page, collapse_linked, decide_found,
                           dense_search, domain_words, lexical_search, question_lang, rrf,
                           to_simplified)
from kbqa.segment import Chunk, tokenize


# How a question asks, not what about: "etcd 的作用是什么" is about etcd, and
# "作用" would match every "作用域" (scope) in the docs.
_QUESTION_FRAME = re.compile(r"(的?作用是什么|有什么作用|有什么用|有何作用|的作用|的用途|是做什么的|"
                             r"是干什么的|是(如何|怎么|怎样)工作的?|(如何|怎么|怎样)工作|工作原理)")

# Recent query vectors kept (512 floats each: 1,024 of them are 2 MB).
QUERY_CACHE_SIZE = 1024


class QueryError(ValueError):
    """Bad input to search/ask; ``code`` is the machine-readable reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def canonical_url(chunk: Chunk, anchor: bool = True) -> str:
    """kubernetes.io URL for a page of the official docs, else the article page here.

    The anchor is the heading's ``{#id}`` (or Hugo's slug of it), so the link
    lands on the passage, not the top of a long page.
    """
    parts = chunk.source.split("/")
    anchor = f"#{quote(chunk.anchor)}" if chunk.anchor and anchor else ""
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
        self._qcache: OrderedDict = OrderedDict()
        self._qlock = threading.Lock()
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

    def warm(self) -> None:
        """Load everything a query needs (index, encoder, tokenizer) and answer once.

        Called before a server forks its workers, so they share the loaded
        pages and none of them makes its first user wait.
        """
        import faiss

        # OpenMP threads started before a fork can hang the children; one
        # query vector needs none.
        faiss.omp_set_num_threads(1)
        # The index and the encoder (sentencepiece, memory-mapped weights) load
        # mostly outside the GIL, so they overlap with jieba's dictionary, which
        # holds it: on two cores the three together take about as long as jieba.
        errors: list[BaseException] = []

        def load() -> None:
            try:
                for entry in self.index.manifest["encoders"][:1]:
                    self.embedder(entry["name"]).load()
            except BaseException as exc:  # noqa: BLE001 — re-raised below
                errors.append(exc)

        loader = threading.Thread(target=load, name="kbqa-warm", daemon=True)
        loader.start()
        tokenize("预热")
        loader.join()
        if errors:
            raise errors[0]
        self.ask("What is etcd?")
        self.ask("etcd 是什么？")

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
        if isinstance(top_k, float) and top_k.is_integer():
            top_k = int(top_k)  # JSON has one number type: 5.0 is the integer 5
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise QueryError("invalid_top_k", "top_k must be an integer")
        if not 1 <= top_k <= self.config.max_top_k:
            raise QueryError("invalid_top_k", f"top_k must be between 1 and {self.config.max_top_k}")
        return question, top_k

    def search(self, question: str, top_k: int | None = None, mode: str | None = None,
               encoders: tuple[str, ...] | None = None) -> SearchResult:
        question, top_k = self._check(question, top_k)
        question = canonical_names(to_simplified(question))
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
                qvec = self._query_vector(name, question)
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
        hits = _diversify(hits, idx.chunks, per_section=2)[:top_k]
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

    def _query_vector(self, name: str, question: str):
        """Encode a query once: people ask the same things, and the chat page retries."""
        key = (name, question)
        with self._qlock:
            vec = self._qcache.get(key)
            if vec is not None:
                self._qcache.move_to_end(key)
                return vec
        vec = self.embedder(name).encode([question], query=True)[0]
        with self._qlock:
            self._qcache[key] = vec
            while len(self._qcache) > QUERY_CACHE_SIZE:
                self._qcache.popitem(last=False)
        return vec

    def _lexical_lists(self, question: str, translated: list[str], lists: dict,
                       weights: dict) -> None:
        """BM25 over text and titles, plus the same in the other language."""
        cfg, idx = self.config, self.index
        qtokens = tokenize(_QUESTION_FRAME.sub(" ", question)) or tokenize(question)
        same_share = 1.0
        if cfg.cross_weight > 0 and translated:
            # The lexical side cannot see across languages by itself. The query
            # in the other language is the glossary's translations plus the
            # words both languages share (names such as Pod or kubeadm),
            # matched against the other language's passages only.
            cross = tokenize(" ".join(translated)) + [t for t in qtokens if t.isascii()]
            other = "en" if question_lang(question) == "zh" else "zh"
            for name, bm in (("cross", idx.bm25), ("cross_title", idx.bm25_title)):
                # (languages from the chunk store's array: no chunk decoded)
                lists[name] = idx.chunks.where(lexical_search(bm, cross, cfg.candidates * 2),
                                               lang=other)[: cfg.candidates]
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
                # Taken from a deeper cut than the title list: a page such as
                # Deployments has dozens of headings naming its subject, all
                # scoring above the opening's bare title.
                lists["lead"] = idx.chunks.where(
                    lexical_search(idx.bm25_title, qtokens, cfg.candidates * 20),
                    ordinal=0)[: cfg.candidates]
                weights["lead"] = cfg.title_weight * same_share

    def passage(self, hit: Hit) -> dict:
        c = self.index.chunks[hit.index]
        return {"id": c.id, "source": c.source, "collection": c.collection, "lang": c.lang,
                "title": c.title, "heading": c.heading, "text": c.text,
                "score": round(hit.score, 6), "url": canonical_url(c)}

    # --- answers ------------------------------------------------------------
    @property
    def llm(self):
        """The optional language model client, when one is configured."""
        cfg = self.config
        if not (cfg.llm_url and cfg.llm_model):
            return None
        if getattr(self, "_llm", None) is None:
            from kbqa.llm import LLMClient

            self._llm = LLMClient(cfg.llm_url, cfg.llm_model, cfg.llm_timeout, cfg.llm_api_key)
        return self._llm

    def ask(self, question: str, top_k: int | None = None, mode: str | None = None,
            encoders: tuple[str, ...] | None = None, history: list | None = None,
            use_llm: bool = True) -> dict:
        """Search, then answer: the language model's if configured and working, else extractive."""
        p = self._prepare(question, top_k, mode, encoders, history)
        note = None
        if use_llm and p.found and self.llm is not None:
            from kbqa.llm import LLMError, build_messages, check_citations

            t = time.perf_counter()
            try:
                text = self.llm.complete(build_messages(p.searched, p.lang, p.answer.passages,
                                                        p.history))
                p.timings["llm"] = _ms(t)
                return self._response(p, check_citations(text, len(p.answer.passages)), "llm")
            except LLMError as exc:
                p.timings["llm"] = _ms(t)
                note = f"{exc}; extractive answer given instead"
        elif use_llm and p.found and self.config.llm_url and not self.config.llm_model:
            note = "KBQA_LLM_URL is set but KBQA_LLM_MODEL is not; extractive answer given"
        return self._response(p, p.answer.text, "extractive", note)

    def ask_stream(self, question: str, top_k: int | None = None,
                   history: list | None = None):
        """Validate and search now (errors raise), then yield (event, data) pairs.

        Events: ``meta`` (what was searched, passages), ``delta`` (answer text
        as it is written), ``done`` (the whole response, as ``ask`` gives it).
        """
        p = self._prepare(question, top_k, None, None, history)
        return self._stream(p)

    def _stream(self, p: "_Prepared"):
        meta = self._response(p, "", "extractive")
        yield "meta", {k: meta[k] for k in ("searched_query", "lang", "found", "question_type",
                                            "passages", "suggestions")}
        if p.found and self.llm is not None:
            from kbqa.llm import LLMError, build_messages, check_citations

            t = time.perf_counter()
            parts: list[str] = []
            try:
                for piece in self.llm.stream(build_messages(p.searched, p.lang, p.answer.passages,
                                                            p.history)):
                    parts.append(piece)
                    yield "delta", {"text": piece}
                text = check_citations("".join(parts), len(p.answer.passages))
                p.timings["llm"] = _ms(t)
                yield "done", self._response(p, text, "llm")
                return
            except LLMError as exc:
                p.timings["llm"] = _ms(t)
                note = f"{exc}; extractive answer given instead"
                yield "done", self._response(p, p.answer.text, "extractive", note)
                return
        text = p.answer.text if p.found else p.not_found
        yield "delta", {"text": text}
        yield "done", self._response(p, p.answer.text if p.found else p.not_found, "extractive")

    def _check_history(self, history) -> list[dict]:
        if history is None:
            return []
        if not isinstance(history, list):
            raise QueryError("invalid_history", "history must be a list of "
                             "{\"question\": str, \"answer\": str} turns, oldest first")
        if len(history) > self.config.max_history_turns:
            raise QueryError("history_too_long", f"history has {len(history)} turns; send at "
                             f"most the last {self.config.max_history_turns}")
        out = []
        for n, turn in enumerate(history):
            if (not isinstance(turn, dict) or not isinstance(turn.get("question"), str)
                    or not isinstance(turn.get("answer", ""), str)):
                raise QueryError("invalid_history", f"history[{n}] must be an object with a "
                                 "string 'question' (and optionally a string 'answer')")
            if len(turn["question"]) > self.config.max_question_chars or \
                    len(turn.get("answer", "")) > 20 * self.config.max_question_chars:
                raise QueryError("history_too_long", f"history[{n}] is too long")
            out.append({"question": to_simplified(turn["question"]),
                        "answer": turn.get("answer", "")})
        return out

    def topics(self, text: str) -> list[str]:
        """Topic words of a text, in order: names and glossary terms (what a pronoun stands for)."""
        idx = self.index
        found: list[tuple[int, str]] = []
        taken = [False] * len(text)
        zh_terms = sorted((k for k in idx.glossary.get("zh2en", {}) if k in text), key=len,
                          reverse=True)
        for term in zh_terms:
            for m in re.finditer(re.escape(term), text):
                if not any(taken[m.start():m.end()]):
                    found.append((m.start(), term))
                    taken[m.start():m.end()] = [True] * (m.end() - m.start())
        en_terms = idx.glossary.get("en2zh", {})
        for m in re.finditer(r"[A-Za-z][A-Za-z0-9.\-]*[A-Za-z0-9]", text):
            word = m.group(0).lower()
            if word in _GENERIC or any(taken[m.start():m.end()]):
                continue
            if word in _NAMES or word in en_terms or idx.lexicon.get(word, 0) >= 3.0:
                found.append((m.start(), m.group(0)))
        return [w for _, w in sorted(found)]

    def _prepare(self, question, top_k, mode, encoders, history) -> "_Prepared":
        t0 = time.perf_counter()
        question, top_k = self._check(question, top_k)
        turns = self._check_history(history)
        question = to_simplified(question)  # the answer's sentences are scored against it
        lang = question_lang(question)
        searched = resolve_followup(question, turns, self.topics) if turns else question
        searched = canonical_names(searched)  # PVC -> PersistentVolumeClaim, as the docs say
        qtype = answer_mod.question_type(searched)
        result = self.search(searched, top_k, mode=mode, encoders=encoders)
        idx = self.index
        hits = [self._in_language(h, lang) for h in result.hits]
        chunks = [idx.chunks[h.index] for h in hits]
        p = _Prepared(t0=t0, question=question, searched=searched, lang=lang, qtype=qtype,
                      found=result.found, timings=result.timings, history=turns,
                      scores={idx.chunks[h.index].id: h.score for h in hits})
        if result.found:
            t = time.perf_counter()
            sides = None
            if qtype == "comparison":
                sides = []
                for side in answer_mod.side_queries(answer_mod.comparison_sides(searched)):
                    found = [idx.chunks[self._in_language(h, lang).index] for h in
                             self.search(_define_query(side, lang), 8, mode=mode,
                                         encoders=encoders).hits]
                    # A side is described in the asker's language where the index
                    # has it ("What is Job?" ranks the zh-cn Job page's short
                    # sections above the English page's opening).
                    sides.append(sorted(found, key=lambda c: c.lang != lang)[:3])
            p.answer = answer_mod.compose(searched, lang, chunks, qtype=qtype,
                                          section=self._section, siblings=self._subsections,
                                          opening=self._opening,
                                          side_passages=sides)
            p.timings["compose"] = _ms(t)
        else:
            seen, nearby = set(), []
            for c in sorted(chunks, key=lambda c: c.lang != lang):
                if c.doc_id not in seen:
                    seen.add(c.doc_id)
                    nearby.append({"title": c.title, "url": canonical_url(c, anchor=False)})
            p.suggestions = nearby[:3]
            p.not_found = answer_mod.compose_not_found(
                lang, [f"[{_md_escape(s['title'])}]({s['url']})" for s in p.suggestions])
            p.answer = answer_mod.Answer(p.not_found, [], qtype)
        return p

    def _response(self, p: "_Prepared", text: str, mode: str, note: str | None = None) -> dict:
        passages = [self._passage_dict(c, p.scores.get(c.id, 0.0)) for c in p.answer.passages]
        return {"answer": text, "answer_html": answer_mod.render_html(text), "found": p.found,
                "lang": p.lang, "question_type": p.qtype, "searched_query": p.searched,
                "mode": mode, "mode_note": note, "passages": passages,
                "suggestions": p.suggestions, "timings": p.timings, "took_ms": _ms(p.t0)}

    def _passage_dict(self, c: Chunk, score: float) -> dict:
        return {"id": c.id, "source": c.source, "collection": c.collection, "lang": c.lang,
                "title": c.title, "heading": c.heading, "text": c.text,
                "score": round(score, 6), "url": canonical_url(c)}

    def _in_language(self, hit: Hit, lang: str) -> Hit:
        """The same passage in the asker's language, when the index links one."""
        idx = self.index
        if idx.chunks[hit.index].lang == lang:
            return hit
        twin = idx.links.get(hit.index)
        if twin is not None and idx.chunks[twin].lang == lang:
            return Hit(twin, hit.score)
        # Translated docs keep the English heading ids: same page, same anchor.
        # (Looked up in the page's own chunks: a map over every chunk costs
        # seconds and hundreds of MB per worker at a million chunks.)
        c = idx.chunks[hit.index]
        twin = next((i for i in idx.chunks.page_rows(chunk_page(c), lang)
                     if idx.chunks[i].anchor == c.anchor), None)
        if twin is None:
            twin = self._same_heading_twin(c, lang)
        return Hit(twin, hit.score) if twin is not None else hit

    def _same_heading_twin(self, chunk: Chunk, lang: str) -> int | None:
        """The section at the same place of the page's translation.

        A translated page keeps the original's outline: when both versions have
        the same number of sections, the k-th section matches the k-th.
        """
        idx = self.index

        def outline(page: str, lang: str) -> list[int]:
            heads: list[int] = []
            for i in idx.chunks.page_rows(page, lang):
                if not heads or idx.chunks[heads[-1]].heading != idx.chunks[i].heading:
                    heads.append(i)
            return heads

        mine = outline(chunk_page(chunk), chunk.lang)
        theirs = outline(chunk_page(chunk), lang)
        if not theirs or len(mine) != len(theirs):
            return None
        # The section this chunk belongs to (a long section is split in chunks).
        pos = self._outline_pos(mine, chunk)
        return theirs[pos] if pos is not None else None

    def _outline_pos(self, starts: list[int], chunk: Chunk) -> int | None:
        span = self._doc_span(chunk)
        me = next(i for i in span if self.index.chunks[i].id == chunk.id)
        return max((k for k, i in enumerate(starts) if i <= me), default=None)

    def _doc_span(self, chunk: Chunk) -> range:
        """Indexes of the chunks of chunk's page (a page's chunks are stored together)."""
        return self.index.chunks.doc_span(chunk.doc_id)  # from the page table, not a scan

    def _opening(self, chunk: Chunk) -> Chunk | None:
        """The first chunk of chunk's page: where a page says what its subject is."""
        first = self.index.chunks[self._doc_span(chunk).start]
        return first if first.ordinal == 0 else None

    def _section(self, chunk: Chunk) -> list[Chunk]:
        """The whole section a chunk belongs to: its neighbours under the same heading."""
        chunks = self.index.chunks
        span = self._doc_span(chunk)
        same = [chunks[i] for i in span if chunks[i].heading == chunk.heading]
        # Only the contiguous run around the chunk.
        ords = [c.ordinal for c in same]
        k = ords.index(chunk.ordinal) if chunk.ordinal in ords else 0
        lo = hi = k
        while lo > 0 and ords[lo - 1] == ords[lo] - 1:
            lo -= 1
        while hi + 1 < len(ords) and ords[hi + 1] == ords[hi] + 1:
            hi += 1
        return same[lo:hi + 1][:8]

    def _subsections(self, chunk: Chunk) -> list[Chunk]:
        """The first chunk of each subsection under chunk's heading, else of its parent."""
        chunks = self.index.chunks
        page = [chunks[i] for i in self._doc_span(chunk)]

        def children(parent: str) -> list[Chunk]:
            prefix = f"{parent} > " if parent else ""
            depth = parent.count(" > ") + 1 if parent else 0
            out, seen = [], set()
            for c in page:
                if c.heading.startswith(prefix) and c.heading.count(" > ") == depth and \
                        c.heading and c.heading not in seen:
                    seen.add(c.heading)
                    out.append(c)
            return out

        kids = children(chunk.heading) if chunk.heading else []
        if len(kids) >= 2:
            return kids
        parent = chunk.heading.rsplit(" > ", 1)[0] if " > " in chunk.heading else None
        return children(parent) if parent else []

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


@dataclass
class _Prepared:
    """A question searched and answered extractively, before any language model."""

    t0: float
    question: str
    searched: str
    lang: str
    qtype: str
    found: bool
    timings: dict
    history: list
    scores: dict
    answer: answer_mod.Answer | None = None
    suggestions: list = field(default_factory=list)
    not_found: str = ""


# Words too general to be what "it" stands for.
_GENERIC = {"kubernetes", "k8s", "cluster", "clusters", "what", "how", "why", "the", "it"}
_NAMES = {n.lower() for n in NAMES}


def _diversify(hits: list[Hit], chunks: list[Chunk], per_section: int) -> list[Hit]:
    """At most ``per_section`` chunks of one section before every other section's best.

    A long section split in five chunks would otherwise fill the results with
    one place in the docs; the rest follow, in order, after the others.
    """
    seen: dict[tuple, int] = {}
    first, later = [], []
    for h in hits:
        c = chunks[h.index]
        key = (c.doc_id, c.heading)
        seen[key] = seen.get(key, 0) + 1
        (first if seen[key] <= per_section else later).append(h)
    return first + later


def _define_query(side: str, lang: str) -> str:
    """A side of a comparison asked as a definition, so its page's opening ranks first."""
    return f"什么是{side}？" if lang == "zh" else f"What is {side}?"


def _md_escape(text: str) -> str:
    return re.sub(r"([\\`*_\[\]()<>#])", r"\\\1", text)


def _ms(t: float) -> float:
    return round((time.perf_counter() - t) * 1000, 3)


__all__ = ["KnowledgeBase", "QueryError", "IndexError_", "canonical_url"]
