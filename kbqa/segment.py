"""Segment: heading-aware chunks, sentence splitting and lexical tokenisation.

A chunk is the unit that is retrieved, cited and shown. It must stand on its
own, so it knows its page title and heading path, never cuts a code block or
a table in half, and is sized per language (a Chinese character carries about
as much as three Latin ones).
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from kbqa.glossary import dictionary_terms

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ANCHOR = re.compile(r"\s*\{#([^}]+)\}\s*$")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
# Sentence ends: Chinese punctuation always ends a sentence; Latin punctuation
# only when followed by whitespace (so "v1.29" and "e.g." inside words survive).
# English sentences may start in lower case with a name (etcd, kubelet, kubectl),
# but not after an abbreviation such as "e.g." or "vs.".
_SENT_END = re.compile(r"(?<=[。！？；!?])\s*|(?<=[.;])\s+(?=[A-Z0-9\u4e00-\u9fff`*\[(\"'])|"
                       r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\betc\.)(?<!\bvs\.)(?<!\bcf\.)(?<!\bapprox\.)"
                       r"(?<=[a-z)]\.)\s+(?=[a-z][\w-]*\s)")


@dataclass
class Block:
    kind: str  # "heading" | "para" | "code" | "table"
    text: str
    level: int = 0
    anchor: str = ""


@dataclass
class Chunk:
    id: str
    doc_id: str
    collection: str
    source: str
    lang: str
    title: str
    heading: str  # heading path, " > " separated
    anchor: str
    text: str
    ordinal: int
    meta: dict = field(default_factory=dict)

    def embed_text(self) -> str:
        """What the encoders see: the context a reader would have, then the text."""
        head = self.title if not self.heading else f"{self.title} > {self.heading}"
        return f"{head}\n{self.text}"


def slugify(heading: str) -> str:
    """Hugo-style anchor: lower case, spaces to dashes, punctuation dropped."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\u3400-\u9fff\s-]", "", s)
    return re.sub(r"\s+", "-", s).strip("-")


def parse_blocks(markdown: str) -> list[Block]:
    """Split Markdown into headings, paragraphs (incl. list items), code and tables."""
    blocks: list[Block] = []
    para: list[str] = []
    lines = markdown.split("\n")
    i = 0

    def flush() -> None:
        if para:
            text = "\n".join(para).strip()
            if text:
                blocks.append(Block("para", text))
            para.clear()

    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush()
            marker = fence.group(1)
            body = [line]
            i += 1
            while i < len(lines):
                body.append(lines[i])
                stripped = lines[i].strip()
                i += 1
                if stripped.startswith(marker[0] * len(marker)) and stripped.strip(marker[0]) == "":
                    break
            blocks.append(Block("code", "\n".join(body)))
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            text = heading.group(2)
            anchor = ""
            m = _ANCHOR.search(text)
            if m:
                anchor, text = m.group(1).strip(), text[: m.start()].strip()
            text = re.sub(r"[*_`]", "", text).strip()
            if text:
                blocks.append(Block("heading", text, len(heading.group(1)), anchor or slugify(text)))
            i += 1
            continue
        if line.lstrip().startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(lines[i])
                i += 1
            blocks.append(Block("table", "\n".join(rows)))
            continue
        if not line.strip():
            flush()
        elif re.match(r"^\s*([-*+]|\d+[.)])\s+", line) and para and not re.match(
                r"^\s*([-*+]|\d+[.)])\s+", para[0]):
            flush()  # a list after a paragraph starts a new block
            para.append(line)
        else:
            para.append(line)
        i += 1
    flush()
    return blocks


def split_sentences(text: str) -> list[str]:
    """Split prose at sentence ends (。！？； and . ! ?), keeping the punctuation."""
    parts = [p.strip() for p in _SENT_END.split(text) if p and p.strip()]
    return parts


def _split_long(text: str, limit: int) -> list[str]:
    """Pack the lines of an over-long block into pieces of at most ~limit.

    Line breaks are kept, so a long list stays one item a line in each piece
    (joined into one line, a six-item list read as a single item). Only a line
    longer than the limit itself is cut, at sentence ends.
    """
    pieces: list[str] = []
    cur = ""
    for line in text.split("\n"):
        parts = [line] if len(line) <= limit else split_sentences(line)
        for j, part in enumerate(parts):
            if not part.strip():
                continue
            if cur and len(cur) + len(part) + 1 > limit:
                pieces.append(cur)
                cur = part
            elif not cur:
                cur = part
            elif j == 0:
                cur = f"{cur}\n{part}"
            else:
                sep = "" if re.search(r"[\u3400-\u9fff]$", cur) else " "
                cur = f"{cur}{sep}{part}"
    if cur:
        pieces.append(cur)
    return pieces


def chunk_document(doc, chunk_chars_en: int = 900, chunk_chars_zh: int = 400) -> list[Chunk]:
    """Group a document's blocks into chunks under their heading path."""
    limit = chunk_chars_zh if doc.lang == "zh" else chunk_chars_en
    chunks: list[Chunk] = []
    path: list[tuple[int, str, str]] = []  # (level, text, anchor)
    buf: list[str] = []
    size = 0

    def emit() -> None:
        nonlocal size
        text = "\n\n".join(buf).strip()
        buf.clear()
        size = 0
        if not text or not re.search(r"\w", text):
            return
        heading = " > ".join(h for _, h, _ in path if h != doc.title) if path else ""
        anchor = path[-1][2] if path else ""
        n = len(chunks)
        chunks.append(Chunk(id=f"{doc.doc_id}#{n}", doc_id=doc.doc_id, collection=doc.collection,
                            source=doc.source, lang=doc.lang, title=doc.title, heading=heading,
                            anchor=anchor, text=text, ordinal=n, meta=dict(doc.meta)))

    for block in parse_blocks(doc.body):
        if block.kind == "heading":
            emit()
            while path and path[-1][0] >= block.level:
                path.pop()
            path.append((block.level, block.text, block.anchor))
            continue
        pieces = [block.text]
        if block.kind == "para" and len(block.text) > limit:
            pieces = _split_long(block.text, limit)
        for piece in pieces:
            if buf and size + len(piece) > limit:
                emit()
            buf.append(piece)
            size += len(piece)
    emit()
    return chunks


# --- lexical tokenisation ----------------------------------------------------

_STOP_EN = frozenset("""a an and are as at be by can do does for from how i in is it its of on or
that the this to what when where which who why will with you your me my we our
they them their there these those was were been being has have had not no yes
if then than so into about also use used using should would could may might
""".split())
_STOP_ZH = frozenset("""的 了 和 是 在 与 及 或 也 就 都 而 及其 什么 怎么 怎样 如何 哪些 哪个
吗 呢 吧 啊 一个 这个 那个 这 那 有 为 为什么 可以 能 会 我 你 他 它 我们 你们 其 之 中 对 上 下
个 把 被 让 给 用 里 要 还 又 以 等 所 从 到 由 请 是否 有没有""".split())
_WORD = re.compile(r"[\w\u3400-\u9fff][\w.\-\u3400-\u9fff]*")
_KEEP = frozenset(dictionary_terms())
_lock = threading.Lock()
_jieba = None
_stemmer = None
_cut_block = None  # jieba's cut of one block, remembered (see words)
_BLOCK = None  # jieba's pattern of the blocks it cuts


def _tokenizer():
    """jieba with the Kubernetes dictionary, created once per process.

    jieba's own start-up (unmarshalling a 500k-entry prefix dictionary) takes
    1.1–1.4 s here, the largest part of a cold start; the prepared dictionary,
    our terms included, is kept in kbqa's cache as a word list and an int
    array, which load in ~0.3 s.
    """
    global _jieba, _stemmer, _cut_block, _BLOCK
    with _lock:
        if _jieba is None:
            import logging

            import jieba
            import Stemmer

            jieba.setLogLevel(logging.WARNING)
            tk = _prepared_jieba(jieba)
            _cut_block = functools.lru_cache(maxsize=1 << 18)(
                lambda block: tuple(tk.cut_for_search(block)))
            _BLOCK = jieba.re_han_default
            _stemmer = Stemmer.Stemmer("english")
            _jieba = tk
    return _jieba, _stemmer


def _prepared_jieba(jieba):
    import numpy as np

    from kbqa import cache

    terms = dictionary_terms()
    dict_file = Path(jieba.__file__).parent / "dict.txt"
    digest = cache.key(jieba.__version__, cache.file_stamp(dict_file), sorted(terms), 200000)
    tk = jieba.Tokenizer()
    where = cache.entry("jieba", digest)
    if where is not None:
        try:
            words = (where / "words.txt").read_bytes().decode("utf-8").split("\n")
            freqs = np.load(where / "freqs.npy").tolist()
            total = int((where / "total").read_text())
            if len(words) == len(freqs):
                tk.FREQ, tk.total, tk.initialized = dict(zip(words, freqs)), total, True
                return tk
        except (OSError, ValueError):
            pass
        cache.discard(where)
    tk.initialize()
    for term in terms:
        tk.add_word(term, freq=200000)

    def write(folder: Path) -> None:
        (folder / "words.txt").write_bytes("\n".join(tk.FREQ).encode("utf-8"))
        np.save(folder / "freqs.npy", np.fromiter(tk.FREQ.values(), dtype=np.int64,
                                                  count=len(tk.FREQ)))
        (folder / "total").write_text(str(tk.total))

    if not any("\n" in w for w in tk.FREQ):
        cache.store("jieba", digest, write)
    return tk


def words(text: str) -> list[str]:
    """Lower-cased words without stop words: jieba for Chinese, runs for English.

    Exactly ``jieba.cut_for_search`` on the whole text, computed block by
    block: jieba cuts each run of Han characters, letters and digits on its
    own, and the same runs ("kubernetes", "pod", "集群") recur thousands of
    times in a corpus, so each is cut once and remembered (7x faster over the
    k8s docs; most of a build's segmentation time was jieba re-cutting them).
    """
    _tokenizer()
    out: list[str] = []
    for block in _BLOCK.split(text.lower()):
        if not block:
            continue
        # Outside the runs jieba yields whitespace and single characters.
        pieces = _cut_block(block) if _BLOCK.match(block) else block
        for word in pieces:
            word = word.strip().strip(".-")
            if word and _WORD.match(word) and word not in _STOP_EN and word not in _STOP_ZH:
                out.append(word)
    return out


def tokenize(text: str) -> list[str]:
    """Lexical tokens for BM25: jieba for Chinese, stemmed words for English.

    Hyphenated names (kube-apiserver) are kept whole and also split into their
    parts, so "apiserver" still finds them.
    """
    return tokens_from_words(words(text))


def tokens_from_words(text_words: Iterable[str]) -> list[str]:
    """BM25 tokens of the output of ``words`` (a build needs both, and jieba once)."""
    _, stemmer = _tokenizer()
    out: list[str] = []
    for word in text_words:
        if not word.isascii():
            out.append(word)
        elif word in _KEEP:
            out.append(word)
            if "-" in word:
                out.extend(p for p in word.split("-") if p)
        elif "-" in word or "." in word:
            out.append(word)
            out.extend(stemmer.stemWord(p) for p in re.split(r"[.\-]", word)
                       if p and p not in _STOP_EN)
        else:
            out.append(stemmer.stemWord(word))
    return out


def tokenize_many(texts: Iterable[str]) -> list[list[str]]:
    return [tokenize(t) for t in texts]


def domain_terms(texts: Iterable[str], min_keyness: float = 2.0, min_count: int = 2) -> dict[str, float]:
    """Words far more frequent in this knowledge base than in general language.

    Keyness is the difference on the Zipf scale (log10 per billion words)
    between the knowledge base and wordfreq's general-language frequency: 2.0
    means a hundred times more frequent here. A question with none of these
    words and only a weak dense match is most likely not about Kubernetes.
    """
    from collections import Counter

    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(words(text))
    return domain_terms_from_counts(counts, {}, min_keyness, min_count)


def domain_terms_from_counts(counts: "Counter[str]", zipf: dict[str, float],
                             min_keyness: float = 2.0, min_count: int = 2) -> dict[str, float]:
    """``domain_terms`` from word counts already made (a build keeps them per chunk).

    ``zipf`` caches each word's general-language frequency across builds
    (wordfreq's lookup is the slow part) and is updated in place.
    """
    import math

    import wordfreq

    total = sum(counts.values()) or 1
    out: dict[str, float] = {}
    for word, n in counts.items():
        if n < min_count or len(word) < 2 or word.isdigit():
            continue
        here = math.log10(n / total * 1e9)
        general = zipf.get(word)
        if general is None:
            general = zipf[word] = wordfreq.zipf_frequency(word, "en" if word.isascii() else "zh")
        if here - general >= min_keyness:
            out[word] = round(here - general, 2)
    for term in dictionary_terms():
        out.setdefault(term, 9.0)
    return out