"""Index: build, write and load the on-disk index.

Layout of ``index/``::

    CURRENT               name of the active version (replaced atomically)
    v-<time>-<pid>/       one complete index version
        manifest.json     models, chunker settings, file hashes, checksums
        chunks.jsonl      chunk text and metadata, one per line
        dense-<enc>.faiss FAISS inner-product index of normalised vectors
        bm25/             bm25s index (JSON + .npy, no pickle)

A build writes a fresh version folder, fsyncs it, then swaps CURRENT with
``os.replace``: a crash at any moment leaves the previous version serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kbqa import __version__
from kbqa.config import Config
from kbqa.embed import canonical_name, get_embedder, slug
from kbqa.ingest import Skipped, iter_documents
from kbqa.segment import Chunk, chunk_document, tokenize

log = logging.getLogger(__name__)
FORMAT = 3  # 2: lexicon.json, glossary.json, bm25-title/; 3: abstention in manifest


class IndexError_(RuntimeError):
    """The index is missing or unusable; the message says which command fixes it."""


@dataclass
class BuildReport:
    files: int = 0
    chunks: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    version: str = ""

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.stages.items())
        return (f"indexed {self.files} files, {self.chunks} chunks, skipped {len(self.skipped)}, "
                f"{self.seconds:.1f}s ({stages})")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _progress(iterable, total: int, desc: str):
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit="chunk")
    return iterable


def build_index(cfg: Config, sources: list[Path] | None = None) -> BuildReport:
    """Parse, segment, embed and index the sources; switch the index atomically."""
    import bm25s
    import faiss

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    started = time.perf_counter()
    report = BuildReport()
    sources = [Path(s) for s in (sources or cfg.sources)]
    for src in sources:
        if not src.is_dir():
            raise IndexError_(f"source folder {src} does not exist; pass --source DIR "
                              "with a folder of Markdown files")
    names = _collection_names(sources)

    t = time.perf_counter()
    docs = []
    for src, name in zip(sources, names):
        docs.extend(iter_documents(src, name, report.skipped))
    report.files = len(docs)
    report.stages["parse"] = time.perf_counter() - t

    t = time.perf_counter()
    chunks: list[Chunk] = []
    for doc in docs:
        chunks.extend(chunk_document(doc, cfg.chunk_chars_en, cfg.chunk_chars_zh))
    if not chunks:
        raise IndexError_("no text found in the sources; check that they hold .md files")
    tokens = [tokenize(c.embed_text()) for c in chunks]
    report.chunks = len(chunks)
    report.stages["segment"] = time.perf_counter() - t

    root = Path(cfg.index_dir)
    root.mkdir(parents=True, exist_ok=True)
    version = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    tmp = root / f".tmp-{version}"
    tmp.mkdir()
    try:
        encoders = []
        t = time.perf_counter()
        texts = [c.embed_text() for c in chunks]
        for name in cfg.encoders:
            emb = get_embedder(name, cfg.query_threads, cfg.build_threads)
            vecs = np.vstack([emb.encode(texts[i:i + 256])
                              for i in _progress(range(0, len(texts), 256),
                                                 (len(texts) + 255) // 256, f"embed {name}")])
            index = faiss.IndexFlatIP(vecs.shape[1])
            index.add(np.ascontiguousarray(vecs, dtype=np.float32))
            fname = f"dense-{slug(name)}.faiss"
            faiss.write_index(index, str(tmp / fname))
            encoders.append({"name": canonical_name(name), "dim": int(vecs.shape[1]), "file": fname})
        report.stages["embed"] = time.perf_counter() - t

        t = time.perf_counter()
        bm25 = bm25s.BM25()
        bm25.index([tok or [""] for tok in tokens], show_progress=False)
        bm25.save(str(tmp / "bm25"))
        # A second, short field: page title and heading path. A question names
        # its subject ("etcd 的作用"), and the page about that subject says so
        # in its title far more reliably than in any one passage.
        titles = bm25s.BM25()
        titles.index([tokenize(f"{c.title} {c.heading}") or [""] for c in chunks], show_progress=False)
        titles.save(str(tmp / "bm25-title"))
        from kbqa.segment import domain_terms

        (tmp / "lexicon.json").write_text(json.dumps(domain_terms(texts), ensure_ascii=False),
                                          encoding="utf-8")
        glossary = mine_glossary(docs, chunks)
        (tmp / "glossary.json").write_text(json.dumps(glossary, ensure_ascii=False), encoding="utf-8")
        lexicon = json.loads((tmp / "lexicon.json").read_text(encoding="utf-8"))
        abstention = calibrate_abstention(cfg, tmp / encoders[0]["file"], cfg.encoders[0],
                                          lexicon, glossary)
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
            for c in chunks:
                fh.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")
        report.stages["index"] = time.perf_counter() - t

        manifest = {
            "format": FORMAT,
            "kbqa_version": __version__,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "encoders": encoders,
            "chunker": {"chunk_chars_en": cfg.chunk_chars_en, "chunk_chars_zh": cfg.chunk_chars_zh},
            "sources": [{"collection": n, "path": str(s.resolve())} for s, n in zip(sources, names)],
            "documents": len(docs),
            "chunks": len(chunks),
            "files": {d.doc_id: d.sha256 for d in docs},
            "skipped": [asdict(s) for s in report.skipped],
            "abstention": abstention,
            "checksums": {p.relative_to(tmp).as_posix(): _sha256(p)
                          for p in sorted(tmp.rglob("*")) if p.is_file()},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1),
                                           encoding="utf-8")
        _fsync_tree(tmp)
        final = root / version
        os.rename(tmp, final)
        _write_current(root, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(root, keep=version)
    report.version = version
    report.seconds = time.perf_counter() - started
    return report


def calibrate_abstention(cfg: Config, faiss_path: Path, encoder: str, lexicon: dict,
                         glossary: dict) -> dict:
    """Fit the out-of-domain guard of this index on shipped off-topic questions."""
    import faiss

    from kbqa.glossary import translate_terms
    from kbqa.retrieve import domain_words, fit_strong_threshold, offtopic_probes

    questions = offtopic_probes()
    index = faiss.read_index(str(faiss_path))
    vecs = get_embedder(encoder, cfg.query_threads, cfg.build_threads).encode(questions, query=True)
    scores, _ = index.search(np.ascontiguousarray(vecs, dtype=np.float32), 1)
    probes = [(float(s[0]), bool(domain_words(q, translate_terms(q, glossary), lexicon)))
              for q, s in zip(questions, scores)]
    strong = fit_strong_threshold(probes, cfg.min_dense_score, cfg.abstention_tolerance)
    accepted = sum(1 for d, w in probes if d >= strong or (w and d >= cfg.min_dense_score))
    return {"encoder": canonical_name(encoder), "min_dense": cfg.min_dense_score,
            "strong_dense": strong, "probes": len(probes), "probes_accepted": accepted,
            "tolerance": cfg.abstention_tolerance}


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


def _prune(root: Path, keep: str) -> None:
    """Drop old versions and abandoned temp folders, keeping the previous one."""
    versions = sorted(p for p in root.glob("v-*") if p.is_dir() and p.name != keep)
    for old in versions[:-1]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob(".tmp-v-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            shutil.rmtree(tmp, ignore_errors=True)


def current_version(root: Path) -> Path:
    root = Path(root)
    marker = root / "CURRENT"
    if not marker.is_file():
        raise IndexError_(f"no index in {root}/ yet: build it with `kbqa index --index-dir {root}`")
    path = root / marker.read_text().strip()
    if not (path / "manifest.json").is_file():
        raise IndexError_(f"index version {path} is incomplete: rebuild with `kbqa index`")
    return path


@dataclass
class LoadedIndex:
    path: Path
    manifest: dict
    chunks: list[Chunk]
    dense: dict  # encoder name -> faiss index
    bm25: object
    bm25_title: object
    lexicon: dict  # domain word -> keyness, see segment.domain_terms
    glossary: dict  # {"zh2en": {...}, "en2zh": {...}}
    links: dict  # chunk index -> chunk index of the same passage in the other language
    lang_share: dict = field(default_factory=dict)  # "zh"/"en" -> share of the chunks

    def __post_init__(self) -> None:
        n = len(self.chunks) or 1
        for lang in ("zh", "en"):
            self.lang_share[lang] = sum(c.lang == lang for c in self.chunks) / n


def load_index(root: Path, verify: bool = True) -> LoadedIndex:
    """Load the active version; every file is checked against the manifest."""
    import bm25s
    import faiss

    path = current_version(root)
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexError_(f"{path}/manifest.json is unreadable ({exc}); rebuild with "
                          "`kbqa index`") from None
    if manifest.get("format") != FORMAT:
        raise IndexError_(f"index {path} has format {manifest.get('format')}, this kbqa reads "
                          f"{FORMAT}: rebuild with `kbqa index`")
    if verify:
        for rel, digest in manifest.get("checksums", {}).items():
            f = path / rel
            if not f.is_file() or _sha256(f) != digest:
                raise IndexError_(f"index file {f} is missing or damaged: rebuild with "
                                  "`kbqa index`")
    try:
        chunks = []
        with open(path / "chunks.jsonl", encoding="utf-8") as fh:
            for line in fh:
                chunks.append(Chunk(**json.loads(line)))
        dense = {e["name"]: faiss.read_index(str(path / e["file"])) for e in manifest["encoders"]}
        bm25 = bm25s.BM25.load(str(path / "bm25"))
        lexicon = json.loads((path / "lexicon.json").read_text(encoding="utf-8"))
        glossary = json.loads((path / "glossary.json").read_text(encoding="utf-8"))
        titles = bm25s.BM25.load(str(path / "bm25-title"))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexError_(f"index {path} cannot be read ({type(exc).__name__}): rebuild with "
                          "`kbqa index`") from None
    return LoadedIndex(path=path, manifest=manifest, chunks=chunks, dense=dense, bm25=bm25,
                       bm25_title=titles, lexicon=lexicon, glossary=glossary,
                       links=link_languages(chunks))


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


def mine_glossary(docs, chunks: list[Chunk]) -> dict:
    """Term pairs from the indexed pages themselves, merged with the core list."""
    from kbqa.glossary import build_glossary, choose_pairs, mine_headings, mine_parenthetical
    from kbqa.segment import _tokenizer

    cut = _tokenizer()[0].lcut
    pairs = choose_pairs(mine_parenthetical([d.body for d in docs if d.lang == "zh"], cut))
    by_key: dict[str, dict[str, str]] = {}
    for c in chunks:
        if c.anchor and c.heading:
            by_key.setdefault(_section_key(c), {})[c.lang] = c.heading.split(" > ")[-1]
        elif c.ordinal == 0:
            by_key.setdefault(_section_key(c), {})[c.lang] = c.title
    aligned = [(v["zh"], v["en"]) for v in by_key.values() if "zh" in v and "en" in v]
    pairs += mine_headings(aligned)
    return build_glossary(pairs)


def is_stale(cfg: Config) -> bool:
    """True when there is no index, or a source file changed since it was built."""
    try:
        path = current_version(cfg.index_dir)
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (IndexError_, OSError, ValueError):
        return True
    if manifest.get("format") != FORMAT:
        return True
    if [canonical_name(e) for e in cfg.encoders] != [e["name"] for e in manifest["encoders"]]:
        return True
    if manifest.get("chunker") != {"chunk_chars_en": cfg.chunk_chars_en,
                                   "chunk_chars_zh": cfg.chunk_chars_zh}:
        return True
    sources = [Path(s) for s in cfg.sources]
    if [str(s.resolve()) for s in sources] != [s["path"] for s in manifest["sources"]]:
        return True
    from kbqa.ingest import list_files

    seen = {}
    for src, name in zip(sources, _collection_names(sources)):
        for f in list_files(src):
            seen[f"{name}:{f.relative_to(src).as_posix()}"] = _sha256(f)
    skipped = {s["source"] for s in manifest.get("skipped", [])}
    known = {k: v for k, v in manifest["files"].items()}
    for doc_id, digest in seen.items():
        if known.get(doc_id) != digest and doc_id.split(":", 1)[1] not in skipped:
            return True
    return any(doc_id not in seen for doc_id in known)
