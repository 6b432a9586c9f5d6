"""Evaluate retrieval and answers against a question set (JSONL).

Each line: id, lang, question, gold (page paths relative to the language
folder; a passage from a gold page in either language is a hit), answer_any
(the answer should contain one of them). Empty gold marks an out-of-domain
question that must be answered ``found: false``.
"""

from __future__ import annotations

import json
from pathlib import Path

from kbqa.answer import answer_sentences, cited, sentence_lang
from kbqa.retrieve import chunk_page


class EvalError(ValueError):
    pass


def load_questions(path: Path) -> list[dict]:
    out = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalError(f"cannot read {path}: {exc.strerror}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
            assert isinstance(q["question"], str) and isinstance(q.get("gold", []), list)
        except (ValueError, KeyError, AssertionError, TypeError):
            raise EvalError(f"{path}:{n}: not a question line (need JSON with question, gold)") from None
        out.append(q)
    return out


def _rate(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def evaluate(kb, questions: list[dict], mode: str | None = None,
             encoders: tuple[str, ...] | None = None, answers: bool = True) -> dict:
    """Page-level recall@1/5, MRR@10, answer hit rate and OOD refusal, per language."""
    rows = []
    for q in questions:
        result = kb.search(q["question"], top_k=10, mode=mode, encoders=encoders)
        pages = [chunk_page(kb.index.chunks[h.index]) for h in result.hits]
        gold = set(q.get("gold") or [])
        row = {"id": q.get("id"), "lang": q.get("lang"), "in_domain": bool(gold),
               "found": result.found}
        if gold:
            rank = next((r for r, p in enumerate(pages, 1) if p in gold), None)
            row.update(r1=float(rank == 1), r5=float(rank is not None and rank <= 5),
                       rr=1.0 / rank if rank else 0.0, rank=rank)
            if answers:
                res = kb.ask(q["question"], mode=mode, encoders=encoders, use_llm=False)
                text = res["answer"]
                if q.get("answer_any"):
                    row["answer_hit"] = float(any(a.lower() in text.lower() for a in q["answer_any"]))
                if res["found"]:
                    sents = answer_sentences(text)
                    n = len(res["passages"])
                    row.update(sentences=len(sents),
                               cited=sum(cited(s, n) for s in sents),
                               in_lang=sum(sentence_lang(s) == res["lang"] for s in sents),
                               answer_chars=len(text), question_type=res["question_type"])
        rows.append(row)

    def share(sel: list[dict], key: str) -> float | None:
        total = sum(r.get("sentences", 0) for r in sel)
        return round(sum(r.get(key, 0) for r in sel) / total, 4) if total else None

    def summary(sel: list[dict]) -> dict:
        ind = [r for r in sel if r["in_domain"]]
        ood = [r for r in sel if not r["in_domain"]]
        answered = [r for r in ind if "answer_chars" in r]
        return {"questions": len(sel),
                "recall@1": _rate([r["r1"] for r in ind]),
                "recall@5": _rate([r["r5"] for r in ind]),
                "mrr@10": _rate([r["rr"] for r in ind]),
                "answer_hit": _rate([r["answer_hit"] for r in ind if "answer_hit" in r]),
                # Of the answers' sentences: ending in a valid [n], and written
                # in the question's language.
                "cited": share(answered, "cited"),
                "in_language": share(answered, "in_lang"),
                "answer_chars": (round(sum(r["answer_chars"] for r in answered) / len(answered), 1)
                                 if answered else None),
                "in_domain_refused": _rate([float(not r["found"]) for r in ind]),
                "ood_refused": _rate([float(not r["found"]) for r in ood])}

    langs = sorted({r["lang"] for r in rows if r["lang"]})
    return {"overall": summary(rows), **{lang: summary([r for r in rows if r["lang"] == lang])
                                         for lang in langs}, "rows": rows}


def format_table(results: dict[str, dict]) -> str:
    """Markdown table: one row per configuration and language slice."""
    cols = ["recall@1", "recall@5", "mrr@10", "answer_hit", "cited", "in_language",
            "answer_chars", "ood_refused", "in_domain_refused"]
    lines = ["| config | slice | n | " + " | ".join(cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for name, res in results.items():
        for slice_name, s in res.items():
            if slice_name == "rows":
                continue
            vals = ["–" if s.get(c) is None else (f"{s[c]:.0f}" if c == "answer_chars" else f"{s[c]:.3f}")
                    for c in cols]
            lines.append(f"| {name} | {slice_name} | {s['questions']} | " + " | ".join(vals) + " |")
    return "\n".join(lines)
