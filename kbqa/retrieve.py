"""Retrieve: dense and lexical candidates, fused by weighted reciprocal rank.

Dense search (the multilingual encoder) is what finds a Chinese page for an
English question; BM25 is what finds exact terms (flags, kinds, error
strings). Reciprocal rank fusion combines them without calibrating their
incomparable scores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from kbqa.index import LoadedIndex
from kbqa.segment import Chunk, tokenize

MODES = ("hybrid", "bm25", "dense")
LEXICAL_LISTS = ("bm25", "title", "lead", "cross", "cross_title")
_CJK = re.compile(r"[\u3400-\u9fff]")


def question_lang(text: str) -> str:
    """The asker's language: any Chinese character makes it Chinese."""
    return "zh" if _CJK.search(text) else "en"


@dataclass
class Hit:
    index: int  # position in LoadedIndex.chunks
    score: float  # fused score, higher is better
    dense: float | None = None  # cosine of the best encoder, if it saw the chunk
    lexical: float | None = None  # BM25 score, if the chunk matched
    ranks: dict = field(default_factory=dict)


@dataclass
class SearchResult:
    hits: list[Hit]
    found: bool
    timings: dict


def dense_search(idx: LoadedIndex, encoder: str, qvec: np.ndarray, n: int) -> list[tuple[int, float]]:
    index = idx.dense[encoder]
    n = min(n, index.ntotal)
    scores, ids = index.search(np.ascontiguousarray(qvec[None, :], dtype=np.float32), n)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def lexical_search(bm25, tokens: list[str], n: int) -> list[tuple[int, float]]:
    """The ``n`` best chunks by BM25 (a bm25s index), best first; equal scores in index order.

    Sums the postings of the query's tokens straight from the (memory-mapped)
    score matrix, then finds the n-th best score with a partition of the
    values (no index sort over every chunk): at a million chunks, three times
    faster than bm25s's own scoring plus ``argpartition`` (benchmarks/scale.py),
    and equal scores are taken in index order even at the cut-off.
    """
    ids = bm25.get_tokens_ids(tokens)
    if not ids:
        return []
    if getattr(bm25, "nonoccurrence_array", None) is not None:  # BM25L/BM25+ add a base score
        scores = np.asarray(bm25.get_scores_from_ids(ids))
    else:
        sc = bm25.scores
        indptr, indices, data = sc["indptr"], sc["indices"], sc["data"]
        scores = np.zeros(sc["num_docs"], dtype=np.dtype(bm25.dtype))
        tok = np.asarray(ids, dtype=np.int64)
        for a, b in zip(indptr[tok].tolist(), indptr[tok + 1].tolist()):
            if b > a:
                np.add.at(scores, indices[a:b], data[a:b])
    top = np.flatnonzero(scores > 0)  # in index order
    if len(top) > n:
        # (Partitioning only the chunks that scored: most chunks score 0, and
        # a partition of many equal values is slow.)
        got = scores[top]
        kth = np.partition(got, len(got) - n)[len(got) - n]
        above = top[got > kth]
        top = np.concatenate([above, top[got == kth][: n - len(above)]])
    # stable sort: equal scores keep index order, i.e. a page's lead chunk first
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(i), float(scores[i])) for i in top]


def rrf(ranked_lists: dict[str, list[tuple[int, float]]], weights: dict[str, float],
        k: int) -> list[Hit]:
    """Weighted reciprocal rank fusion: sum of w / (k + rank) over the lists."""
    hits: dict[int, Hit] = {}
    for name, ranked in ranked_lists.items():
        w = weights.get(name, 1.0)
        for rank, (i, s) in enumerate(ranked, start=1):
            hit = hits.setdefault(i, Hit(index=i, score=0.0))
            hit.score += w / (k + rank)
            hit.ranks[name] = rank
            if name == "bm25":
                hit.lexical = s
            elif name in LEXICAL_LISTS:
                pass
            else:
                hit.dense = s if hit.dense is None else max(hit.dense, s)
    return sorted(hits.values(), key=lambda h: -h.score)


def chunk_page(chunk: Chunk) -> str:
    """Page key without the language folder: the same page in en/ and zh-cn/ matches."""
    parts = chunk.source.split("/")
    if len(parts) > 1 and parts[0].lower() in ("en", "zh", "zh-cn"):
        parts = parts[1:]
    return "/".join(parts)


def collapse_linked(hits: list[Hit], links: dict[int, int], chunks: list[Chunk],
                    lang: str) -> list[Hit]:
    """Show a passage once: of two language versions keep the asker's, at the better score."""
    by_index = {h.index: h for h in hits}
    out: list[Hit] = []
    seen: set[int] = set()
    for h in hits:  # best first
        if h.index in seen:
            continue
        twin = by_index.get(links.get(h.index, -1))
        if twin is not None and twin.index not in seen:
            asker_has_twin = chunks[twin.index].lang == lang and chunks[h.index].lang != lang
            keep = twin if asker_has_twin else h
            keep.score = h.score
            seen.update((h.index, twin.index))
            out.append(keep)
        else:
            seen.add(h.index)
            out.append(h)
    return out


_T2S = None


def to_simplified(text: str) -> str:
    """Traditional Chinese questions are read as Simplified (with Taiwan phrases mapped)."""
    global _T2S
    if not _CJK.search(text):
        return text
    if _T2S is None:
        import opencc

        _T2S = (opencc.OpenCC("t2s"), opencc.OpenCC("tw2sp"))
    if _T2S[0].convert(text) == text:
        return text  # already Simplified: leave phrases alone
    return _T2S[1].convert(text)


def domain_words(question: str, translated: list[str], lexicon: dict) -> list[str]:
    """Words of the question (or of its glossary translation) characteristic of the index."""
    from kbqa.glossary import kind_names
    from kbqa.segment import words

    found = [w for w in words(question + " " + " ".join(translated)) if w in lexicon]
    # "Service" in "What types of Service are there?" is the kind, though
    # "service" is too common a word in English to be characteristic of the index.
    return found + [k for k in kind_names(question) if k not in found]


def decide_found(best_dense: float, has_domain_words: bool, min_dense: float,
                 strong_dense: float) -> bool:
    """A strong dense match stands on its own; a middling one needs a domain word."""
    return best_dense >= strong_dense or (best_dense >= min_dense and has_domain_words)


def fit_strong_threshold(probes: list[tuple[float, bool]], min_dense: float,
                         tolerance: float) -> float:
    """Lowest strong threshold that lets at most ``tolerance`` of off-topic probes through.

    probes: (best dense score, has domain words) of questions known to be off
    topic. Probes let through by their domain words count against the budget
    first; the threshold then sits just above the highest remaining score.
    """
    budget = int(tolerance * len(probes))
    by_words = sum(1 for d, w in probes if w and d >= min_dense)
    rest = sorted((d for d, w in probes if not (w and d >= min_dense)), reverse=True)
    allowed = max(0, budget - by_words)
    above = rest[allowed] if allowed < len(rest) else min_dense
    return round(max(min_dense, above + 0.01), 3)


def offtopic_probes() -> list[str]:
    from pathlib import Path

    path = Path(__file__).parent / "data" / "offtopic.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]
