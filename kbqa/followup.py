"""Follow-up questions: resolve "它的数据怎么备份？" against the earlier turns.

A follow-up leans on an earlier turn for its topic, by a pronoun ("it", 它)
or by ellipsis ("and how do I restore it?", "那 kubelet 呢？" is not one:
it names its own topic). We take the topic words of the latest turn that had
some, and put them where the pronoun was (or in front). Pure text functions:
the caller says which words are topics (the index's domain lexicon).
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

MAX_TURNS = 10

_ZH_PRONOUN = re.compile(r"(它们|它|该组件|该对象|该资源|这个组件|这个对象|这个|那个)")
# "that"/"this" mostly start relative clauses or name their own noun: not pronouns here.
_EN_PRONOUN = re.compile(r"\b(it|its|they|them|their)\b", re.I)
_ZH_ELLIPSIS = re.compile(r"(^(那么?|还有|另外|以及|然后|再|又)|呢[？?]?$)")
_EN_ELLIPSIS = re.compile(r"^(and|also|then|so|what about|how about|and then)\b", re.I)
_EN_LEAD = re.compile(r"^(and|also|then|so)\s+,?\s*", re.I)


def is_followup(question: str, own_topics: list[str]) -> bool:
    """A pronoun or an elliptical start, and no topic of its own besides."""
    q = question.strip()
    if _ZH_PRONOUN.search(q) or _EN_PRONOUN.search(q):
        return True
    if _ZH_ELLIPSIS.search(q) or _EN_ELLIPSIS.search(q):
        return not own_topics
    return False


def resolve(question: str, history: Iterable[dict], topics: Callable[[str], list[str]]) -> str:
    """The question to search: the follow-up with the earlier turn's topic filled in.

    ``topics(text)`` returns the topic words of a text in the order they occur,
    in their surface form.
    """
    turns = [t for t in history if isinstance(t, dict) and isinstance(t.get("question"), str)]
    if not turns:
        return question
    own = topics(question)
    q = question.strip()
    if own and (_ZH_ELLIPSIS.search(q) or _EN_ELLIPSIS.search(q)) and not (
            _ZH_PRONOUN.search(q) or _EN_PRONOUN.search(q)):
        # "那 kubelet 呢？" after "etcd 的作用是什么？": the same question about kubelet.
        earlier = resolve(turns[-1]["question"], turns[:-1], topics)
        old = topics(earlier)
        if old and len(q) <= 40:
            first = earlier.find(old[0])
            if first >= 0:
                return earlier[:first] + " ".join(own[:3]) + earlier[first + len(old[0]):]
        return question
    if not is_followup(question, own):
        return question
    # The latest earlier turn with a topic, itself resolved against its own past.
    topic: list[str] = []
    for k in range(len(turns) - 1, -1, -1):
        earlier = resolve(turns[k]["question"], turns[:k], topics)
        topic = [t for t in topics(earlier) if t.lower() not in {o.lower() for o in own}]
        if topic:
            break
    if not topic:
        return question
    subject = " ".join(topic[:3])
    q = question.strip()
    if re.search(r"[\u3400-\u9fff]", q):
        q = re.sub(r"^(那么?|还有|另外|以及|然后)\s*[，,]?\s*", "", q)
        if _ZH_PRONOUN.search(q):
            q = _ZH_PRONOUN.sub(lambda m: f" {subject} ", q, count=1)
            return re.sub(r"\s+", " ", q).strip()
        return f"{subject} {q}"
    q = _EN_LEAD.sub("", q)
    q = re.sub(r"^(what|how) about\b", lambda m: m.group(0), q, flags=re.I)
    if _EN_PRONOUN.search(q):
        def fill(m: re.Match) -> str:
            word = m.group(1).lower()
            return f"{subject}'s" if word in ("its", "their") else subject
        return _EN_PRONOUN.sub(fill, q, count=1)
    return f"{q.rstrip('?？ ')} ({subject})?" if q.endswith(("?", "？")) else f"{q} ({subject})"
