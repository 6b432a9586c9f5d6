import re

import pytest

from kbqa.answer import render_html
from kbqa.kb import QueryError, canonical_url
from kbqa.segment import Chunk


def top_sources(kb, question, k=3):
    return [kb.index.chunks[h.index].source for h in kb.search(question, top_k=k).hits]


@pytest.mark.parametrize("question,article", [
    ("etcd 的作用是什么？", "etcd.md"),
    ("What does kube-proxy do?", "kube-proxy.md"),
    ("How does a worker node join a kubeadm cluster?", "kubeadm-install.md"),
    ("kube-proxy 的 IPVS 模式", "kube-proxy.md"),
    ("调度器如何为 Pod 选择节点？", "kube-scheduler.md"),
    ("How do I back up etcd with etcdctl?", "etcd.md"),
])
def test_smoke_questions_find_their_article_in_top_3(kb, question, article):
    assert any(s.endswith("/" + article) for s in top_sources(kb, question)), top_sources(kb, question)


@pytest.mark.parametrize("question", [
    "How do I bake a chocolate cake?", "今天上海的天气怎么样？", "Who won the 2018 World Cup?",
    "推荐一部好看的电影",
])
def test_out_of_domain_questions_are_not_found(kb, question):
    res = kb.ask(question)
    assert res["found"] is False and res["passages"] == []
    assert ("没有" in res["answer"]) == (res["lang"] == "zh")


def test_modes_differ_and_all_work(kb):
    q = "etcd snapshot restore"
    for mode in ("bm25", "dense", "hybrid"):
        assert kb.search(q, mode=mode).hits
    with pytest.raises(QueryError):
        kb.search(q, mode="nope")


def test_answer_cites_returned_passages_with_their_own_sentences(kb):
    for q in ("etcd 的作用是什么？", "What does the kubelet do?", "How do I install kubeadm?"):
        res = kb.ask(q, top_k=5)
        assert res["found"]
        cites = [int(n) for n in re.findall(r"\[(\d+)\]", res["answer"])]
        assert cites and all(1 <= n <= len(res["passages"]) for n in cites)
        # every cited sentence is text of the passage it cites
        for sentence, n in re.findall(r"([^\[\]]+?)\s*\[(\d+)\]", res["answer"]):
            sentence = sentence.strip().strip("`").strip()
            if sentence.startswith(("(", "（")) or "```" in sentence or not sentence:
                continue
            passage = re.sub(r"\s+", " ", res["passages"][int(n) - 1]["text"])
            assert re.sub(r"\s+", " ", sentence) in passage, (sentence, passage[:200])


def test_answer_language_follows_the_question(kb):
    zh = kb.ask("kubelet 是做什么的？")
    en = kb.ask("What is the kubelet?")
    assert zh["lang"] == "zh" and re.search(r"[\u4e00-\u9fff]", zh["answer"])
    assert en["lang"] == "en" and not re.search(r"[\u4e00-\u9fff]", en["answer"])


def test_procedure_question_gets_the_commands(kb):
    res = kb.ask("How does a worker node join a kubeadm cluster?")
    assert "kubeadm join" in res["answer"] and "```" in res["answer"]


def test_render_html_removes_script_and_handlers():
    html = render_html("<script>alert(1)</script> <img src=x onerror=alert(1)> "
                       "[x](javascript:alert(1)) <svg onload=alert(1)></svg> **ok**")
    assert "<script" not in html and "onerror" not in html and "javascript:" not in html
    assert "<svg" not in html and "<strong>ok</strong>" in html


def _chunk(source, anchor="", collection="k8s-docs"):
    return Chunk(id="x", doc_id="x", collection=collection, source=source, lang="en", title="t",
                 heading="", anchor=anchor, text="t", ordinal=0)


def test_canonical_urls():
    assert canonical_url(_chunk("en/concepts/overview/components.md", "control-plane-components")) \
        == "https://kubernetes.io/docs/concepts/overview/components/#control-plane-components"
    assert canonical_url(_chunk("zh-cn/concepts/architecture/_index.md")) \
        == "https://kubernetes.io/zh-cn/docs/concepts/architecture/"
    assert canonical_url(_chunk("zh/etcd.md", "backup", "corpus")) == "/articles/corpus/zh/etcd.md#backup"


def test_eval_metrics_on_known_questions(kb, tmp_path):
    from kbqa.evaluate import evaluate

    qs = [{"id": "a", "lang": "zh", "question": "etcd 的作用是什么？", "gold": ["etcd.md"],
           "answer_any": ["etcd"]},
          {"id": "b", "lang": "en", "question": "What does kube-proxy do?",
           "gold": ["kube-proxy.md"], "answer_any": ["Service"]},
          {"id": "c", "lang": "en", "question": "What does kube-proxy do?",
           "gold": ["no-such-page.md"], "answer_any": ["zzzz-never"]},
          {"id": "d", "lang": "en", "question": "How do I bake a chocolate cake?", "gold": [],
           "answer_any": []}]
    res = evaluate(kb, qs)
    o = res["overall"]
    assert o["recall@5"] == pytest.approx(2 / 3, abs=1e-3) and o["answer_hit"] == pytest.approx(2 / 3, abs=1e-3)
    assert o["ood_refused"] == 1.0 and o["in_domain_refused"] == 0.0
    assert res["zh"]["recall@1"] == 1.0
