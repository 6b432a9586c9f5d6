"""Answer: compose an extractive, cited answer from retrieved passages.

There is no language model on the machine, so every sentence of an answer is
a sentence of a returned passage, followed by ``[n]`` pointing at it. What we
choose is which sentences, in what order, and in which language.
"""

from __future__ import annotations

import re
import textwrap

import markdown as md
import nh3

from kbqa.segment import Chunk, parse_blocks, split_sentences, tokenize

_PROCEDURE = re.compile(r"(如何|怎么|怎样|步骤|命令|\bhow (do|can|to|does)\b|\bsteps?\b|\bcommand\b)", re.I)
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
MAX_SENTENCES = 4

NOT_FOUND = {
    "zh": "抱歉，知识库中没有与这个问题相关的内容。",
    "en": "Sorry, the knowledge base has nothing on this question.",
}
NEARBY = {"zh": "知识库涵盖的相关主题：", "en": "Topics the knowledge base does cover:"}
OTHER_LANG = {"zh": "（以下内容来自英文资料）", "en": "(The following comes from Chinese sources.)"}


_DEFINITION = re.compile(r"(什么是|是什么|是啥|作用|干什么|做什么|用途|\bwhat (is|are|does)\b|\bwhat's\b|"
                         r"\bpurpose of\b|\bdefine\b|\bmeaning of\b)", re.I)


def is_definition(question: str) -> bool:
    return bool(_DEFINITION.search(question))


def is_procedure(question: str) -> bool:
    return bool(_PROCEDURE.search(question))


def _prose_sentences(text: str) -> list[str]:
    """Whole sentences from the prose of a passage (code and tables excluded)."""
    out: list[str] = []
    for block in parse_blocks(text):
        if block.kind != "para":
            continue
        for line in re.split(r"\n(?=\s*(?:[-*+]|\d+[.)])\s)", block.text):
            line = _LIST_MARK.sub("", line.replace("\n", " ")).strip()
            line = re.sub(r"^:\s*", "", line)
            for sent in split_sentences(line):
                sent = sent.strip()
                if len(sent) >= 8 and re.search(r"\w", sent):
                    out.append(sent)
    return out


def _first_code(text: str) -> str | None:
    for block in parse_blocks(text):
        if block.kind == "code":
            return block.text
    return None


_DEFINES = re.compile(r"^(?:\*\*)?([\w.\- ]{1,40}?)(?:\*\*)?(?:（[^）]*）|\s*\([^)]*\))?\s*"
                      r"(?:is|are|refers to|是|指)\s*(?:a|an|the|一个|一种|一款)?", re.I)


def _score(sentence: str, qtokens: set[str]) -> float:
    """Query-term overlap, plus a bonus for a sentence that defines a query term."""
    toks = set(tokenize(sentence))
    if not toks or not qtokens:
        return 0.0
    score = len(toks & qtokens) / (len(qtokens) ** 0.5)
    m = _DEFINES.match(sentence)
    if m and set(tokenize(m.group(1))) & qtokens:
        score += 1.0
    return score


def compose(question: str, lang: str, passages: list[Chunk]) -> str:
    """An answer in Markdown; passages[i] is cited as [i+1]."""
    if not passages:
        return NOT_FOUND[lang]
    qtokens = set(tokenize(question))
    # Prefer evidence in the asker's language among the three best passages.
    order = list(range(len(passages)))
    same = [i for i in order[:3] if passages[i].lang == lang]
    if is_definition(question):
        # A page's opening passage is where it defines its subject.
        same.sort(key=lambda i: passages[i].ordinal != 0)
    primary = same[0] if same else 0
    use = [primary] + [i for i in order[:3] if i != primary and passages[i].lang == passages[primary].lang]

    chosen: list[tuple[int, str]] = []
    seen: set[str] = set()
    for rank, i in enumerate(use):
        sents = _prose_sentences(passages[i].text)
        if not sents:
            continue
        scored = sorted(((_score(s, qtokens) - 0.05 * pos, pos, s) for pos, s in enumerate(sents)),
                        reverse=True)
        # The lead passage gives up to three sentences, the others one each.
        picks = [s for sc, _, s in scored if sc > 0][: 3 if rank == 0 else 1]
        if rank == 0 and not picks:
            picks = sents[:1]
        for s in sorted(picks, key=sents.index):
            key = re.sub(r"\W+", "", s.lower())
            if key in seen:
                continue
            seen.add(key)
            chosen.append((i, s))
        if len(chosen) >= MAX_SENTENCES:
            break
    chosen = chosen[:MAX_SENTENCES]

    parts: list[str] = []
    if passages[primary].lang != lang:
        parts.append(OTHER_LANG[lang])
    joiner = "" if passages[primary].lang == "zh" else " "
    parts.append(joiner.join(f"{s} [{i + 1}]" for i, s in chosen) if chosen else "")
    if is_procedure(question):
        for i in use[:2]:
            code = _first_code(passages[i].text)
            if code:
                parts.append(f"{textwrap.dedent(code)}\n\n[{i + 1}]")
                break
    return "\n\n".join(p for p in parts if p).strip() or NOT_FOUND[lang]


def compose_not_found(lang: str, nearby_titles: list[str]) -> str:
    text = NOT_FOUND[lang]
    if nearby_titles:
        text += "\n\n" + NEARBY[lang] + "\n\n" + "\n".join(f"- {t}" for t in nearby_titles[:3])
    return text


_ALLOWED_TAGS = {"p", "br", "ul", "ol", "li", "pre", "code", "strong", "em", "blockquote",
                 "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a", "hr"}


def render_html(markdown_text: str, heading_ids: bool = False) -> str:
    """Markdown to HTML, then an allow-list sanitiser: nothing can run script.

    With heading_ids, headings carry the same anchors as the passages' URLs.
    """
    extensions = ["fenced_code", "tables", "sane_lists"]
    attributes: dict[str, set[str]] = {"a": {"href", "title"}, "code": {"class"}}
    if heading_ids:
        markdown_text = "\n\n".join(_heading_with_id(b) for b in parse_blocks(markdown_text))
        extensions.append("attr_list")
        attributes.update({f"h{n}": {"id"} for n in range(1, 7)})
    html = md.markdown(markdown_text, extensions=extensions)
    return nh3.clean(html, tags=_ALLOWED_TAGS | {"h1", "h2"}, attributes=attributes,
                     url_schemes={"http", "https"}, link_rel="noopener noreferrer")


def _heading_with_id(block) -> str:
    if block.kind != "heading":
        return block.text
    return f"{'#' * block.level} {block.text} {{#{block.anchor}}}"
