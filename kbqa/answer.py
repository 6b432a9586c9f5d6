"""Answer: compose an extractive, cited answer from retrieved passages.

There is no language model on the machine by default, so every sentence of an
answer is a sentence of a passage, followed by ``[n]`` pointing at it. What we
choose is the shape (by question type), which sentences, in what order, and in
which language. Text processing only: the caller supplies the passages and,
where a shape needs them, the rest of a section or its sibling sections.
"""

from __future__ import annotations

import math
import re
import textwrap
import threading
from collections import Counter
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Callable

import markdown as md
import nh3

from kbqa.segment import Chunk, parse_blocks, split_sentences, tokenize, words

QUESTION_TYPES = ("definition", "procedure", "comparison", "list", "general")
MAX_SENTENCES = 4
MAX_STEPS = 8
MAX_ITEMS = 8
MAX_CODE_LINES = 14

NOT_FOUND = {
    "zh": "抱歉，知识库中没有与这个问题相关的内容。",
    "en": "Sorry, the knowledge base has nothing on this question.",
}
NEARBY = {"zh": "知识库涵盖的相关主题：", "en": "Topics the knowledge base does cover:"}
OTHER_LANG = {"zh": "（以下内容来自英文资料）", "en": "(The following comes from Chinese sources.)"}
DIFFERENCE = {"zh": "**主要区别：**", "en": "**Key difference:**"}
# Our own framing lines: everything else in an answer is a cited passage sentence.
FRAMING = {*NOT_FOUND.values(), *NEARBY.values(), *OTHER_LANG.values(), *DIFFERENCE.values()}

# --- question types --------------------------------------------------------------

_DEFINITION = re.compile(r"(什么是|是什么|是啥|是指|作用|干什么|做什么|用途|有什么用|\bwhat (is|are|does)\b|"
                         r"\bwhat's\b|\bpurpose of\b|\bdefine\b|\bmeaning of\b|\bused for\b)", re.I)
_PROCEDURE_ZH = re.compile(r"(如何|怎么|怎样|步骤|命令|流程|指令)")
# "是如何隔离的" / "怎么工作" ask how something works, not for steps to follow.
_MECHANISM_ZH = re.compile(r"(是(如何|怎么|怎样).{0,12}的|(如何|怎么|怎样)(工作|运作|运行|实现)|原理)")
_PROCEDURE_EN = re.compile(r"(\bhow (do|does|can|should|would|to)\b|\bsteps?\b|\bcommands?\b|"
                           r"\binstall|\bset ?up\b|\bconfigure\b|\bupgrade\b|\brestore\b|\bback ?up\b)", re.I)
_MECHANISM_EN = re.compile(r"(\bhow (does|do|is|are)\b.*\bwork\b|\bhow\b.*\bworks\b|\bmechanism\b)", re.I)
_WORKS_ZH = re.compile(r"((如何|怎么|怎样)(工作|运作|运行)|工作原理)")
_COMPARISON = re.compile(r"(区别|不同|差异|异同|对比|比较|相比|\bvs\.?(?=\s)|\bversus\b|\bdiffer|"
                         r"\bcompare|\bcomparison\b)", re.I)
_LIST_ZH = re.compile(r"(哪些|哪几|几种|几类|几个|由什么组成|组成部分|包括什么|包含什么|列举|列出)")
_LIST_EN = re.compile(r"(\b(what|which)\b[^?]*\b(components|kinds|types|phases|stages|modes|ways|options|"
                      r"fields|parts|topologies|states|conditions|factors|plugins)\b|\bmake up\b|"
                      r"\bconsists? of\b|\blist (of|all|the)\b)", re.I)

_SIDES = [
    re.compile(r"^(?:请问)?(?P<a>.+?)\s*(?:和|与|跟|同|以及|对比|相比|比较)\s*(?P<b>.+?)\s*"
               r"(?:之间|两者)?\s*(?:有|的)?\s*(?:什么|啥|哪些|何)?\s*(?:区别|不同|差异|异同|对比|比较)"),
    re.compile(r"\bdifferences? between (?:an? |the )?(?P<a>.+?) and (?:an? |the )?(?P<b>.+?)\s*[?.!]*$", re.I),
    re.compile(r"\bhow (?:is|are|does|do) (?:an? |the )?(?P<a>.+?) (?:different|differ) from "
               r"(?:an? |the )?(?P<b>.+?)\s*[?.!]*$", re.I),
    re.compile(r"\bcompare (?:an? |the )?(?P<a>.+?) (?:and|with|to) (?:an? |the )?(?P<b>.+?)\s*[?.!]*$", re.I),
    re.compile(r"^(?:an? |the )?(?P<a>.+?)\s+(?:vs\.?|versus|compared (?:to|with))\s+(?:an? |the )?"
               r"(?P<b>.+?)\s*[?.!]*$", re.I),
]


def is_definition(question: str) -> bool:
    """A concept question: what X is, what it is for, or how it works."""
    return bool(_DEFINITION.search(question) or _WORKS_ZH.search(question)
                or _MECHANISM_EN.search(question))


def is_procedure(question: str) -> bool:
    if _PROCEDURE_ZH.search(question):
        return not _MECHANISM_ZH.search(question)
    return bool(_PROCEDURE_EN.search(question)) and not _MECHANISM_EN.search(question)


def comparison_sides(question: str) -> tuple[str, str] | None:
    """The two things compared, when the question names both."""
    if not _COMPARISON.search(question):
        return None
    q = question.strip().rstrip("？?。.！! ")
    for pattern in _SIDES:
        m = pattern.search(q)
        if m:
            a, b = (_clean_side(m.group("a")), _clean_side(m.group("b")))
            if a and b and a.lower() != b.lower():
                return a, b
    return None


def side_queries(sides: tuple[str, str]) -> tuple[str, str]:
    """Each side as a search of its own: "iptables and IPVS mode in kube-proxy"
    compares iptables mode in kube-proxy with IPVS mode in kube-proxy."""
    a, b = sides
    if len(a.split()) == 1 and len(b.split()) > 1 and a.isascii() and b.isascii():
        a = f"{a} {b.split(maxsplit=1)[1]}"
    return a, b


def _clean_side(text: str) -> str:
    text = re.sub(r"^(what is the|what are the|what's the|what is|what are|请问|kubernetes ?中的?)\s*", "",
                  text.strip(), flags=re.I)
    return text.strip(" ，,、的?？")


_ASKED_ZH = re.compile(r"(?:哪些|哪几种|哪几类|哪几个|哪几|几种|几类)\s*([\u4e00-\u9fffA-Za-z]{1,6})")
_ASKED_EN = re.compile(r"\b(?:which|what)\s+(?:kinds? of |types? of |are the )?([a-z]+s)\b", re.I)


def asked_items(question: str) -> set[str]:
    """Tokens of the things a list question asks for: 哪些组件 → 组件, which phases → phase."""
    m = _ASKED_ZH.search(question) or _ASKED_EN.search(question)
    if not m:
        return set()
    return set(tokenize(m.group(1))) - {"有", "是", "会"}


def question_type(question: str) -> str:
    """definition / procedure / comparison / list / general, in either language."""
    if comparison_sides(question):
        return "comparison"
    if _LIST_ZH.search(question) or _LIST_EN.search(question):
        return "list"
    if is_procedure(question):
        return "procedure"
    if is_definition(question):
        return "definition"
    return "general"


_SUBJECT_STRIP = re.compile(
    r"(请问|什么是|是什么|是啥|是指什么|有什么作用|有什么用|的作用是什么|的作用|作用是什么|作用|用来做什么|"
    r"用途|干什么|做什么|吗|呢|\bwhat (is|are|does)\b|\bwhat's\b|\bthe purpose of\b|\bpurpose\b|"
    r"\bdefine\b|\bmeaning of\b|\bused for\b|\bdo\b|\bin kubernetes\b|\ban?\b|\bthe\b|"
    r"是(如何|怎么|怎样)工作的|(如何|怎么|怎样)工作|工作原理|\bhow (does|do|is|are)\b|\bwork\b|\bworks\b|"
    r"[？?。.!！])", re.I)


@lru_cache(maxsize=50000)
def _names(text: str) -> frozenset[str]:
    """Words without stemming (a controller is not a control plane), plural folded."""
    return frozenset(w[:-1] if w.endswith("s") and len(w) > 3 else w for w in words(text))


def subject_of(question: str) -> set[str]:
    """Words of what a definition question asks about ("etcd 的作用是什么" → etcd)."""
    names = _names(_SUBJECT_STRIP.sub(" ", question))
    return (names - _DOMAIN) or names


_DOMAIN = {"kubernete", "kubernetes", "k8s", "中", "中的"}


# --- passage structure ----------------------------------------------------------

_LIST_MARK = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+")
_DEFINES = re.compile(r"^(?:\*\*)?([\w.\- ]{1,40}?)(?:\*\*)?(?:（[^）]*）|\s*\([^)]*\))?\s*"
                      r"(?:is|are|refers to|是|指)\s*(?:a|an|the|一个|一种|一款)?", re.I)
_CONTRAST = re.compile(r"(而|但|不同|区别|差异|相比|不像|然而|unlike|whereas|while|but|instead|differ|"
                       r"in contrast|rather than)", re.I)


@dataclass
class Unit:
    """One piece of a passage an answer can quote: a sentence, a list item or code."""

    kind: str  # "sent", "intro" (ends with a colon), "item", "code"
    text: str
    pos: int
    ordered: bool = False
    group: int = -1  # list items of one list share a group
    number: int = 0  # an ordered item's number ("3." → 3)


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text.replace("\n", " ")).strip()
    return re.sub(r"^:\s*", "", text)


def _is_sentence(text: str) -> bool:
    """Whole sentences only: not a bare label such as "**Notes:**" or a heading."""
    bare = re.sub(r"[*_`]", "", text).strip()
    if len(bare) < 8 or not re.search(r"\w", bare):
        return False
    return bool(re.search(r"[.!?。！？；;:：]$", bare)) or len(bare) >= 60


def units(text: str) -> list[Unit]:
    """Split a passage into quotable units, keeping list membership and code.

    Fresh objects for each caller (they are adjusted while composing); the
    parsing itself is cached, passages recur from question to question.
    """
    return [Unit(u.kind, u.text, u.pos, u.ordered, u.group, u.number) for u in _units(text)]


@lru_cache(maxsize=20000)
def _units(text: str) -> tuple[Unit, ...]:
    return tuple(_parse_units(text))


@lru_cache(maxsize=100000)
def _tokset(text: str) -> frozenset[str]:
    """A sentence's lexical tokens (jieba is the cost of composing; sentences recur)."""
    return frozenset(tokenize(text))


def _parse_units(text: str) -> list[Unit]:
    out: list[Unit] = []
    group = -1
    in_list = False
    for block in parse_blocks(text):
        if block.kind == "code":
            body = re.sub(r"^\s*(```|~~~)[^\n]*\n?", "", block.text)
            body = textwrap.dedent(re.sub(r"\n?\s*(```|~~~)\s*$", "", body)).rstrip()
            if body.strip():
                out.append(Unit("code", body, len(out), group=group if in_list else -1))
            continue
        rows = _table_rows(block.text.split("\n")) if block.kind == "table" else None
        if rows is not None:
            # A table of things and what they are: one item a row, so "有哪些…"
            # answers from it as from a list (its introduction stays the intro).
            group += 1
            in_list = False
            for row in rows:
                out.append(Unit("item", row, len(out), group=group))
            continue
        if block.kind != "para":
            in_list = False
            continue
        lines = block.text.split("\n")
        items: list[tuple[bool, str]] = []
        prose: list[str] = []
        for line in lines:
            m = _LIST_MARK.match(line)
            if m:
                items.append((m.group(2)[:-1] if m.group(2)[0].isdigit() else "", line[m.end():]))
            elif line.lstrip().startswith(":") and (items or prose):
                # Hugo definition list: "Term\n: description".
                term = items.pop()[1] if items else prose.pop()
                items.append(("", f"{_clean(term)}: {_clean(line)}"))
            elif items:
                items[-1] = (items[-1][0], items[-1][1] + " " + line.strip())
            else:
                prose.append(line)
        indented = bool(lines) and lines[0].startswith(("  ", "\t")) and not items
        if prose and not indented:
            in_list = False
            for sent in split_sentences(_clean(" ".join(prose))):
                if _is_sentence(sent):
                    kind = "intro" if re.search(r"[:：]$", sent) else "sent"
                    out.append(Unit(kind, sent, len(out)))
        elif prose and indented and in_list:
            # A continuation paragraph of the last list item.
            last = next((u for u in reversed(out) if u.kind == "item"), None)
            if last is not None:
                last.text = f"{last.text} {_clean(' '.join(prose))}"
        if items:
            if not in_list:
                group += 1
                in_list = True
            for number, item in items:
                item = _clean(item)
                if len(re.sub(r"[*_`]", "", item)) >= 2:
                    out.append(Unit("item", item, len(out), ordered=bool(number), group=group,
                                    number=int(number) if number else 0))
    return out


def _table_rows(lines: list[str]) -> list[str] | None:
    """The body rows of a Markdown table as "first cell: other cells", or None."""
    if len(lines) < 3 or not all(ln.strip().startswith("|") for ln in lines):
        return None
    if not re.fullmatch(r"\|?(\s*:?-{2,}:?\s*\|)+\s*:?-*:?\s*\|?", lines[1].strip()):
        return None
    rows = []
    for line in lines[2:]:
        cells = [_clean(c) for c in line.strip().strip("|").split("|")]
        cells = [c for c in cells if c]
        if len(cells) >= 2:
            rows.append(f"{cells[0]}: {'; '.join(cells[1:])}")
        elif cells:
            rows.append(cells[0])
    return rows or None


def _first_sentence(text: str, limit: int = 220) -> str:
    sents = split_sentences(text)
    first = sents[0] if sents else text
    if len(first) > limit and len(sents) > 1:
        return first
    return first


# --- scoring -------------------------------------------------------------------

class _Scorer:
    """Query-term overlap weighted by how rare a term is among the candidates.

    A name that every candidate sentence repeats ("kube-scheduler") says little
    about which sentence answers; the rarer asked-for word ("因素") says a lot.
    """

    def __init__(self, question: str, texts: list[str]):
        self.q = set(tokenize(question))
        self.toks = {t: _tokset(t) for t in set(texts)}
        df = Counter(tok for toks in self.toks.values() for tok in toks & self.q)
        n = max(1, len(self.toks))
        self.idf = {t: math.log(1 + n / (1 + df[t])) for t in self.q}
        self.norm = math.sqrt(sum(self.idf.values())) or 1.0

    def __call__(self, text: str) -> float:
        toks = self.toks.get(text)
        if toks is None:
            toks = self.toks[text] = _tokset(text)
        score = sum(self.idf[t] for t in toks & self.q) / self.norm
        m = _DEFINES.match(text)
        if m and _tokset(m.group(1)) & self.q:
            score += 0.5
        if len(text) > 400:
            score *= 0.7
        return score


# --- composition -----------------------------------------------------------------

@dataclass
class Answer:
    text: str
    passages: list[Chunk]  # cited as [i + 1]; the retrieved ones first
    question_type: str
    other_language: bool = False


@dataclass
class _Writer:
    """Collects cited lines and the passages they cite, without duplicates."""

    passages: list[Chunk]
    joiner: str = " "
    seen: set = field(default_factory=set)

    def cite(self, chunk: Chunk) -> int:
        for i, c in enumerate(self.passages):
            if c.id == chunk.id:
                return i + 1
        self.passages.append(chunk)
        return len(self.passages)

    def is_fresh(self, text: str) -> bool:
        return re.sub(r"\W+", "", text.lower()) not in self.seen

    def fresh(self, text: str) -> bool:
        """True the first time a sentence is offered: no sentence twice in an answer."""
        key = re.sub(r"\W+", "", text.lower())
        if not key or key in self.seen:
            return False
        self.seen.add(key)
        return True

    def sentence(self, text: str, chunk: Chunk) -> str:
        return f"{text} [{self.cite(chunk)}]"


def _joiner(lang: str) -> str:
    return "" if lang == "zh" else " "


def _code(text: str) -> str:
    lines = text.split("\n")
    if len(lines) > MAX_CODE_LINES:
        lines = lines[:MAX_CODE_LINES] + ["# …"]
    body = "\n".join(lines)
    fence = "~~~~" if "```" in body else "```"
    return f"{fence}\n{body}\n{fence}"


def _indent(text: str, n: int = 4) -> str:
    return textwrap.indent(text, " " * n)


def _pick_language(lang: str, passages: list[Chunk]) -> tuple[list[Chunk], bool]:
    """The best passages in the asker's language, else (marked) the other's."""
    same = [c for c in passages if c.lang == lang]
    if same:
        return same, False
    return [c for c in passages if c.lang == passages[0].lang], True


def _prose(chunks: list[Chunk], intros: bool = False) -> list[tuple[Chunk, Unit]]:
    kinds = ("sent", "intro") if intros else ("sent",)
    return [(c, u) for c in chunks for u in units(c.text) if u.kind in kinds]


def _code_after(chunk: Chunk, unit: Unit) -> str | None:
    us = units(chunk.text)
    k = next((i for i, u in enumerate(us) if u.pos == unit.pos), None)
    if k is not None and k + 1 < len(us) and us[k + 1].kind == "code":
        return us[k + 1].text
    return None


def _label(chunk: Chunk, text: str) -> str:
    """The section a lead sentence belongs to, when the sentence does not say it.

    "Control plane component that serves the Kubernetes API." means little
    without its heading, kube-apiserver.
    """
    leaf = chunk.heading.split(" > ")[-1] if chunk.heading else chunk.title
    if not leaf or len(leaf) > 40 or _names(leaf) & _names(text):
        return ""
    return f"**{leaf.replace('*', '')}**: "


def _definition(question: str, subject: set[str], chunks: list[Chunk], w: _Writer,
                limit: int = MAX_SENTENCES,
                opening: Callable[[Chunk], Chunk | None] | None = None) -> list[str]:
    """The sentence that defines the subject, then the best supporting sentences.

    A page about X defines X in its opening, so when one of the best passages
    comes from X's own page, that page's opening is a candidate too.
    """
    pool = list(chunks[:3])
    if opening is not None:
        for c in chunks[:3]:
            first = opening(c) if subject & _names(c.title) else None
            if first is not None and all(first.id != x.id for x in pool):
                pool.append(first)
    cands = _prose(pool)
    if not cands:
        return []
    scorer = _Scorer(question, [u.text for _, u in cands])

    def defines(unit: Unit) -> bool:
        """"X is ...", where X is the subject (give or take a word)."""
        m = _DEFINES.match(unit.text)
        said = _names(m.group(1)) - _DOMAIN if m else set()
        return bool(said) and said <= subject

    def lead_rank(item: tuple[Chunk, Unit]) -> tuple:
        c, u = item
        own_page = bool(subject & _names(c.title))
        return (not defines(u), not (c.ordinal == 0 and own_page), pool.index(c), u.pos)

    cands = [x for x in cands if w.is_fresh(x[1].text)] or cands
    lead_chunk, lead = min(cands, key=lead_rank)
    if not defines(lead) and not (lead_chunk.ordinal == 0 and subject & _names(lead_chunk.title)):
        # No defining sentence: the best-scoring sentence of the best passage.
        first = [x for x in cands if x[0] is pool[0]] or cands
        lead_chunk, lead = max(first, key=lambda x: (scorer(x[1].text), -x[1].pos))
    used = [(lead_chunk, lead)]
    w.fresh(lead.text)
    rest = sorted((x for x in cands if x[1] is not lead),
                  key=lambda x: -(scorer(x[1].text) - 0.04 * x[1].pos - 0.3 * pool.index(x[0])))
    per_chunk = Counter({lead_chunk.id: 1})
    for c, u in rest:
        if len(used) >= limit:
            break
        # Support from more than one passage: the lead's page opening rarely
        # says how the thing works or what it is used for. Support is about
        # the subject: named in the sentence, or on the lead's page.
        if scorer(u.text) <= 0 or per_chunk[c.id] >= 2:
            continue
        if c.doc_id != lead_chunk.doc_id and not subject & _names(u.text):
            continue
        if not w.fresh(u.text):
            continue
        per_chunk[c.id] += 1
        used.append((c, u))
    if len(used) < 3:
        # What follows a definition explains it, even without repeating the name.
        for c, u in cands:
            if len(used) >= 3:
                break
            if c is lead_chunk and lead.pos < u.pos <= lead.pos + 2 and w.fresh(u.text):
                used.append((c, u))
    support = sorted(used[1:], key=lambda x: (pool.index(x[0]), x[1].pos))
    lines = [_label(lead_chunk, lead.text) + w.sentence(lead.text, lead_chunk)]
    return lines + [w.sentence(u.text, c) for c, u in support]


def _general(question: str, chunks: list[Chunk], w: _Writer, limit: int = MAX_SENTENCES,
             section: Callable[[Chunk], list[Chunk]] | None = None) -> list[str]:
    """The sentences of the best passages that share the question's rarest words.

    A passage that is only "Check the kubelet first:" and a command still
    answers: the sentence comes with its command.
    """
    pool = list(chunks[:3])
    if section is not None and chunks:
        # A passage is cut by size, not meaning: the rest of the best section counts too.
        pool += [c for c in section(chunks[0]) if all(c.id != x.id for x in pool)]
    cands = _prose(pool) or _prose(pool, intros=True) or _prose(chunks, intros=True)
    if not cands:
        return []
    pool += [c for c, _ in cands if all(c.id != x.id for x in pool)]
    scorer = _Scorer(question, [u.text for _, u in cands])
    ranked = sorted(cands, key=lambda x: -(scorer(x[1].text) - 0.04 * x[1].pos
                                           - 0.25 * min(pool.index(x[0]), 3)))
    used: list[tuple[Chunk, Unit]] = []
    per_chunk: Counter = Counter()
    for c, u in ranked:
        if len(used) >= limit:
            break
        if (used and scorer(u.text) <= 0) or per_chunk[c.id] >= (3 if c is pool[0] else 2):
            continue
        if w.fresh(u.text):
            used.append((c, u))
            per_chunk[c.id] += 1
    used.sort(key=lambda x: (pool.index(x[0]), x[1].pos))
    lines = []
    for c, u in used:
        line = w.sentence(u.text, c)
        code = _code_after(c, u) if u.kind == "intro" else None
        lines.append(f"{line}\n\n{_code(code)}\n\n" if code else line)
    if used:
        lines[0] = _label(used[0][0], used[0][1].text) + lines[0]
    return lines


def _best_prose(question: str, chunks: list[Chunk]) -> float:
    cands = [u.text for _, u in _prose(chunks[:3])]
    if not cands:
        return 0.0
    scorer = _Scorer(question, cands)
    return max(scorer(t) for t in cands)


def _steps(question: str, chunks: list[Chunk], section: Callable[[Chunk], list[Chunk]] | None,
           w: _Writer) -> tuple[list[str], list[Chunk]] | None:
    """An ordered list of steps (with their commands) from the best procedural section.

    Only the best passage's section, or another section of the same page: steps
    from a weaker page answer a different question.
    """
    scorer = None
    heads = _Scorer(question, [f"{c.title} {c.heading}" for c in chunks[:3]])
    # The runner-up's page only when its title names something asked about:
    # "How do I run a batch task until it completes" is not answered by the
    # Deployments page's "Complete Deployment" steps.
    asked = _tokset(question)
    order = [c for k, c in enumerate(chunks[:3])
             if c.doc_id == chunks[0].doc_id or (k == 1 and _tokset(c.title) & asked)]
    order.sort(key=lambda c: -(heads(f"{c.title} {c.heading}") - 0.2 * chunks.index(c)))
    for chunk in order:
        sec = section(chunk) if section else [chunk]
        seq = [(c, u) for c in sec for u in units(c.text)]
        if not any(u.kind == "code" or (u.kind == "item" and u.ordered) for _, u in seq):
            continue
        steps: list[tuple[Chunk, str, str | None]] = []
        # Numbered steps, followed across chunk boundaries by their numbers.
        groups: dict[int, list[int]] = {}
        last, gid = None, -1
        for k, (c, u) in enumerate(seq):
            if u.kind == "item" and u.ordered:
                if last is None or u.number != seq[last][1].number + 1:
                    gid += 1
                groups.setdefault(gid, []).append(k)
                last = k

        def code_after(k: int) -> str | None:
            nxt = seq[k + 1][1] if k + 1 < len(seq) else None
            return nxt.text if nxt is not None and nxt.kind == "code" else None

        def useful(g: list[int]) -> bool:
            # A table of contents ("1. 升级主控制平面节点") is not a procedure.
            return len(g) >= 2 and (any(code_after(k) for k in g)
                                    or sum(len(seq[k][1].text) >= 30 for k in g) * 2 >= len(g))

        groups = {g: ks for g, ks in groups.items() if useful(ks)}
        if groups:
            scorer = scorer or _Scorer(question, [u.text for _, u in seq if u.kind == "item"])
            best = max(groups, key=lambda g: sum(scorer(seq[k][1].text) for k in groups[g]))
            for k in groups[best]:
                c, u = seq[k]
                steps.append((c, _step_text(u.text), code_after(k)))
        else:
            for k, (c, u) in enumerate(seq):
                if u.kind == "code" and k > 0 and seq[k - 1][1].kind in ("sent", "intro", "item"):
                    prev_c, prev = seq[k - 1]
                    steps.append((prev_c, _step_text(prev.text), u.text))
        steps = [s for s in steps if w.fresh(s[1])][:MAX_STEPS]
        if not steps:
            continue
        out = []
        for n, (c, text, code) in enumerate(steps, 1):
            line = f"{n}. {w.sentence(text, c)}"
            if code:
                line += "\n\n" + _indent(_code(code))
            out.append(line)
        return out, sec
    return None


def _step_text(text: str) -> str:
    """A step's instruction: its first sentence or two, whole."""
    sents = split_sentences(text)
    keep = sents[0] if sents else text
    if len(keep) < 40 and len(sents) > 1:
        keep = f"{keep} {sents[1]}"
    return keep.strip()


def _items(question: str, chunks: list[Chunk], siblings: Callable[[Chunk], list[Chunk]] | None,
           w: _Writer, section: Callable[[Chunk], list[Chunk]] | None = None) -> list[str] | None:
    """A bullet list of the things asked for, with a line each.

    From a list in the passages or from the subsections of a section, whichever
    is introduced by words closest to the question; none when a prose sentence
    answers it more closely than any list's introduction.
    """
    around = section(chunks[0]) if section is not None and chunks else []
    prose = [u.text for _, u in _prose(list(chunks[:3]) + around)]
    cands: list[tuple[float, int, Chunk, list]] = []
    noun = asked_items(question)
    # Two things asked for ("优点和缺点") live in two sections: look further down.
    depth = 5 if len(noun or ()) > 1 else 3
    for rank, chunk in enumerate(chunks[:depth]):
        # The whole section, not the chunk: a list or table is often cut in
        # two by the chunker, or follows its introduction in the next chunk.
        run = section(chunk) if section is not None else []
        if not any(c.id == chunk.id for c in run):
            run = [chunk]
        us = units("\n\n".join(c.text for c in run))
        plain = [_unmarked(c.text) for c in run]
        groups: dict[int, list[Unit]] = {}
        for u in us:
            if u.kind == "item":
                groups.setdefault(u.group, []).append(u)
        for g, items in groups.items():
            if len(items) < 2:
                continue
            intro = next((u for u in reversed(us[: items[0].pos]) if u.kind in ("intro", "sent")), None)
            context = " ".join([chunk.title, chunk.heading, intro.text if intro else ""])
            entries = [(_holder(u.text, run, plain, chunk), _first_sentence(u.text), None)
                       for u in items[:MAX_ITEMS]]
            cands.append((context, rank, chunk, [intro if intro and intro.kind == "intro" else None,
                                                 entries]))
        if siblings:
            sibs = siblings(chunk)
            entries = []
            for c in sibs[:MAX_ITEMS]:
                first = next((u for u in units(c.text) if u.kind == "sent"), None)
                if first is not None:
                    entries.append((c, first.text, c.heading.split(" > ")[-1]))
            if len(entries) >= 2:
                parent = sibs[0].heading.rsplit(" > ", 1)[0] if " > " in sibs[0].heading else ""
                cands.append((f"{chunk.title} {parent}", rank, chunk, [None, entries]))
    if not cands:
        return None
    scorer = _Scorer(question, prose + [c[0] for c in cands])
    if noun:
        # A list introduced by the things asked for ("组件", "phases") answers;
        # a list of something else does not, when a sentence names them.
        on_topic = [c for c in cands if noun & _tokset(c[0])]
        if on_topic:
            cands = on_topic
        elif any(noun & _tokset(t) for t in prose):
            return None
    def rank_key(c):
        return (scorer(c[0]) - 0.3 * c[1], -c[1])

    best = max(cands, key=rank_key)
    if not noun and scorer(best[0]) < 0.6 * max([scorer(t) for t in prose] or [0.0]):
        return None
    picks = [best]
    if noun and len(noun) > 1:
        # "优点和缺点", "advantages and drawbacks": a list for each thing asked
        # for, in the question's order, each under its own introduction.
        picks = []
        def own_words(c) -> frozenset[str]:
            # Its heading and introduction, not the page title, which may name
            # both ("Kubernetes 是什么：功能、优缺点与应用场景").
            intro = c[3][0]
            return _tokset(f"{c[2].heading} {intro.text if intro else ''}")

        for n in sorted(noun, key=lambda n: (question.lower().find(n), n)):
            own = [c for c in cands if n in own_words(c)] or \
                [c for c in cands if n in _tokset(c[0])]
            if own:
                pick = max(own, key=rank_key)
                if all(pick is not p for p in picks):
                    picks.append(pick)
        picks = picks or [best]
    lines = []
    for context, _, chunk, (intro, entries) in picks:
        if intro is None and len(picks) > 1:
            label = (chunk.heading.split(" > ")[-1] or chunk.title).strip()
            intro = Unit("intro", f"{label}{'：' if re.search(r'[一-鿿]', label) else ':'}", 0)
        if intro is not None and w.fresh(intro.text):
            lines.append(w.sentence(intro.text, chunk))
        for c, text, label in entries:
            if w.fresh(text):
                head = f"**{label.replace('*', '')}**: " if label else ""
                lines.append(f"- {head}{w.sentence(text, c)}")
    return lines if sum(ln.startswith("- ") for ln in lines) >= 2 else None


def _unmarked(text: str) -> str:
    return re.sub(r"[*_`]", "", text)


def _holder(text: str, run: list[Chunk], plain: list[str], default: Chunk) -> Chunk:
    """The chunk of a section an item was taken from, for its citation.

    ``plain``: the run's texts without emphasis marks, made once per section.
    """
    probe = _unmarked(text)[:16]
    return next((c for c, t in zip(run, plain) if probe in t), default)


def _comparison(question: str, sides: tuple[str, str], side_chunks: list[list[Chunk]],
                chunks: list[Chunk], lang: str, w: _Writer) -> list[str] | None:
    paragraphs = []
    for side, found in zip(sides, side_chunks):
        if not found:
            continue
        found, _ = _pick_language(lang, found)
        lines = _definition(side, subject_of(side), found, w, limit=2)
        if lines:
            paragraphs.append(_joiner(lang).join(lines))
    if len(paragraphs) < 2:
        return None
    # The key difference names both sides by their head words (iptables, IPVS).
    a, b = (set(tokenize(s.split()[0] if s.isascii() else s)) for s in sides)
    a, b = (a - b) or a, (b - a) or b
    pool = []
    for c in list(chunks[:5]) + [c for found in side_chunks for c in found[:3]]:
        if c.lang != lang:
            continue
        for u in units(c.text):
            toks = _tokset(u.text) if u.kind == "sent" else frozenset()
            if toks & a and toks & b:
                pool.append((bool(_CONTRAST.search(u.text)), -u.pos, c, u))
    pool.sort(key=lambda x: (not x[0], -x[1]))
    for _, _, c, u in pool:
        if w.fresh(u.text):
            paragraphs.append(f"{DIFFERENCE[lang]} {w.sentence(u.text, c)}")
            break
    return paragraphs


def compose(question: str, lang: str, passages: list[Chunk], *,
            qtype: str | None = None,
            section: Callable[[Chunk], list[Chunk]] | None = None,
            opening: Callable[[Chunk], Chunk | None] | None = None,
            siblings: Callable[[Chunk], list[Chunk]] | None = None,
            side_passages: list[list[Chunk]] | None = None) -> Answer:
    """An answer in Markdown shaped by the question's type; every sentence cited.

    ``passages`` are the retrieved ones, best first; the answer may cite more
    of the same sections (``section``) or sibling sections (``siblings``), and
    those are appended to ``Answer.passages``.
    """
    qtype = qtype or question_type(question)
    w = _Writer(list(passages), joiner=_joiner(lang))
    if not passages:
        return Answer(NOT_FOUND[lang], [], qtype)
    chunks, other = _pick_language(lang, passages)
    evidence_lang = chunks[0].lang
    join = _joiner(evidence_lang)
    blocks: list[str] = []
    if qtype == "comparison" and side_passages:
        sides = comparison_sides(question)
        paras = _comparison(question, sides, side_passages, chunks, lang, w) if sides else None
        if paras:
            blocks = paras
    elif qtype == "list":
        items = _items(question, chunks, siblings, w, section)
        if items:
            # Each introduction as its own paragraph, its bullets after it.
            blocks = []
            for ln in items:
                if ln.startswith("- ") and blocks and blocks[-1].startswith("- "):
                    blocks[-1] += "\n" + ln
                elif not ln.startswith("- ") and blocks and not blocks[-1].startswith("- "):
                    blocks[-1] += join + ln
                else:
                    blocks.append(ln)
    elif qtype == "procedure":
        found = _steps(question, chunks, section, w)
        if found:
            steps, sec = found
            lead = _general(question, sec, w, limit=1)
            blocks = lead + ["\n\n".join(steps)]
    elif qtype == "definition":
        lines = _definition(question, subject_of(question), chunks, w, opening=opening)
        if lines:
            blocks = [join.join(lines)]
    if not blocks:
        lines = _general(question, chunks, w, section=section)
        blocks = [join.join(lines)] if lines else []
    if not blocks:
        return Answer(NOT_FOUND[lang], list(passages), qtype)
    if other:
        blocks.insert(0, OTHER_LANG[lang])
    text = re.sub(r"\n{3,}", "\n\n", "\n\n".join(b.strip() for b in blocks)).strip()
    return Answer(text, w.passages, qtype, other_language=other)


def compose_not_found(lang: str, nearby_titles: list[str]) -> str:
    text = NOT_FOUND[lang]
    if nearby_titles:
        text += "\n\n" + NEARBY[lang] + "\n\n" + "\n".join(f"- {t}" for t in nearby_titles[:3])
    return text


# --- checking answers (for eval and tests) ------------------------------------

_CITE = re.compile(r"\[(\d+)\]")
_CJK = re.compile(r"[\u3400-\u9fff]")


def answer_sentences(markdown_text: str) -> list[str]:
    """The answer's sentences, without code blocks and our own framing lines."""
    text = re.sub(r"(?ms)^\s*(```|~~~~).*?^\s*\1\s*$", "", markdown_text)
    out = []
    for line in text.split("\n"):
        line = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", line).strip()
        for f in FRAMING:
            line = line.replace(f, "")
        line = re.sub(r"^\*\*[^*]+\*\*:\s*", "", line).strip()
        if not line:
            continue
        # A citation closes a sentence: "… 。 [1]" / "… . [2]".
        end = 0
        for m in re.finditer(r"\[\d+\](?:\s*\[\d+\])*", line):
            out.append(line[end:m.end()].strip())
            end = m.end()
        out.append(line[end:].strip())
    return [s for s in out if re.sub(r"[\W_]", "", _CITE.sub("", s))]


def cited(sentence: str, n_passages: int) -> bool:
    """Whether the sentence ends with a citation of a returned passage."""
    m = re.search(r"(?:\[(\d+)\])+\s*$", sentence)
    return bool(m) and all(1 <= int(n) <= n_passages
                           for n in _CITE.findall(sentence[m.start():]))


def sentence_lang(sentence: str) -> str:
    """zh when the sentence is written in Chinese (names and code aside)."""
    text = re.sub(r"`[^`]*`|\[\d+\]", "", sentence)
    return "zh" if _CJK.search(text) else "en"


# --- rendering -----------------------------------------------------------------

_ALLOWED_TAGS = {"p", "br", "ul", "ol", "li", "pre", "code", "strong", "em", "blockquote",
                 "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a", "hr"}
_MD_CONFIG = {"pymdownx.highlight": {"use_pygments": False}}


_renderers = threading.local()


def _renderer(heading_ids: bool) -> md.Markdown:
    """One Markdown instance per thread and kind: building one costs more than rendering."""
    key = "articles" if heading_ids else "answers"
    r = getattr(_renderers, key, None)
    if r is None:
        extensions = ["pymdownx.superfences", "tables", "sane_lists"]
        if heading_ids:
            extensions.append("attr_list")
        r = md.Markdown(extensions=extensions, extension_configs=_MD_CONFIG)
        setattr(_renderers, key, r)
    return r


def render_html(markdown_text: str, heading_ids: bool = False) -> str:
    """Markdown to HTML, then an allow-list sanitiser: nothing can run script.

    superfences keeps fenced commands inside numbered steps. With heading_ids,
    headings carry the same anchors as the passages' URLs.
    """
    attributes: dict[str, set[str]] = {"a": {"href", "title"}, "code": {"class"},
                                       "ol": {"start"}}
    if heading_ids:
        markdown_text = "\n\n".join(_heading_with_id(b) for b in parse_blocks(markdown_text))
        attributes.update({f"h{n}": {"id"} for n in range(1, 7)})
    renderer = _renderer(heading_ids)
    html = renderer.reset().convert(markdown_text)
    return nh3.clean(html, tags=_ALLOWED_TAGS | {"h1", "h2"}, attributes=attributes,
                     url_schemes={"http", "https"}, link_rel="noopener noreferrer")


def _heading_with_id(block) -> str:
    if block.kind != "heading":
        return block.text
    return f"{'#' * block.level} {block.text} {{#{block.anchor}}}"
