"""Answers shaped by question type, cited sentence by sentence, in the asker's language."""

from __future__ import annotations

import re

import pytest

from kbqa.answer import (OTHER_LANG, answer_sentences, cited, comparison_sides, compose,
                         question_type, render_html, sentence_lang)
from kbqa.followup import resolve
from kbqa.segment import Chunk


def chunk(text: str, *, lang: str = "en", source: str = "en/page.md", heading: str = "",
          title: str = "Page", ordinal: int = 0) -> Chunk:
    return Chunk(id=f"t:{source}#{ordinal}", doc_id=f"t:{source}", collection="t", source=source,
                 lang=lang, title=title, heading=heading, anchor="", text=text, ordinal=ordinal)


def assert_cited(answer: str, n: int) -> list[str]:
    sents = answer_sentences(answer)
    assert sents, answer
    for s in sents:
        assert cited(s, n), f"uncited sentence: {s!r}"
    return sents


# --- question types -------------------------------------------------------------

@pytest.mark.parametrize("question,kind", [
    ("什么是 etcd？", "definition"),
    ("etcd 是什么？", "definition"),
    ("etcd 的作用", "definition"),
    ("What is a Pod?", "definition"),
    ("控制器是怎么工作的？", "definition"),
    ("How does node affinity work?", "definition"),
    ("如何用 kubeadm 初始化集群？", "procedure"),
    ("怎么备份 etcd", "procedure"),
    ("How do I restore etcd from a snapshot?", "procedure"),
    ("What are the steps to install kubeadm?", "procedure"),
    ("Deployment 和 StatefulSet 有什么区别？", "comparison"),
    ("What is the difference between a Secret and a ConfigMap?", "comparison"),
    ("How is a Secret different from a ConfigMap?", "comparison"),
    ("iptables vs IPVS", "comparison"),
    ("控制平面由哪些组件组成？", "list"),
    ("Which components make up the control plane?", "list"),
    ("Pod 的生命周期包括哪些阶段？", "list"),
    ("StatefulSet 适合什么样的应用？", "general"),
])
def test_question_types_in_both_languages(question, kind):
    assert question_type(question) == kind


def test_comparison_sides():
    assert comparison_sides("Deployment 和 StatefulSet 有什么区别？") == ("Deployment", "StatefulSet")
    assert comparison_sides("What is the difference between a Secret and a ConfigMap?") == \
        ("Secret", "ConfigMap")
    assert comparison_sides("What is a Pod?") is None


# --- shapes on small passages ------------------------------------------------------

STEPS = chunk("""Back up etcd before you change anything.

1. Take a snapshot of the running member with etcdctl:

   ```shell
   ETCDCTL_API=3 etcdctl snapshot save /backup/snap.db
   ```

2. Check that the snapshot file is complete and readable:

   ```shell
   etcdutl snapshot status /backup/snap.db
   ```

3. Copy the snapshot to storage outside the cluster, such as an object store.
""", heading="Backing up etcd", title="etcd")


def test_procedure_is_an_ordered_list_with_commands_as_code():
    ans = compose("How do I back up etcd?", "en", [STEPS])
    assert ans.question_type == "procedure"
    steps = re.findall(r"^(\d+)\. ", ans.text, flags=re.M)
    assert steps == ["1", "2", "3"], ans.text
    assert "etcdctl snapshot save /backup/snap.db" in ans.text
    html = render_html(ans.text)
    # The command stays a code block inside its step, not inline text.
    assert re.search(r"<li>.*?<pre><code>[^<]*etcdctl snapshot save", html, flags=re.S), html
    assert html.count("<li>") == 3
    assert_cited(ans.text, len(ans.passages))


def test_steps_continue_across_chunks_of_one_section():
    first = chunk("To install:\n\n1. Update the package index of the machine first:\n\n"
                  "   ```shell\n   apt-get update\n   ```\n\n"
                  "2. Add the signing key of the package repository:\n",
                  heading="Install", ordinal=3)
    second = chunk("```shell\ncurl -fsSL https://example.test/key | gpg --dearmor\n```\n\n"
                   "3. Install the packages and hold their version:\n\n"
                   "   ```shell\n   apt-get install -y kubeadm\n   ```\n", heading="Install", ordinal=4)
    ans = compose("How do I install kubeadm?", "en", [first],
                  section=lambda c: [first, second])
    assert re.findall(r"^(\d+)\. ", ans.text, flags=re.M) == ["1", "2", "3"], ans.text
    assert "gpg --dearmor" in ans.text and "apt-get install -y kubeadm" in ans.text
    # The step from the second chunk cites it, and it is added to the passages.
    assert [c.ordinal for c in ans.passages] == [3, 4]
    assert_cited(ans.text, len(ans.passages))


def test_list_question_gets_bullets_from_the_passage_list():
    c = chunk("A node's status holds the following information:\n\n"
              "- Addresses: the host name and IP addresses of the node.\n"
              "- Conditions: whether the node is ready, and under memory or disk pressure.\n"
              "- Capacity: the resources available on the node.\n",
              heading="Node status", title="Nodes")
    ans = compose("Which fields make up a node's status?", "en", [c])
    assert ans.question_type == "list"
    bullets = [ln for ln in ans.text.splitlines() if ln.startswith("- ")]
    assert len(bullets) == 3 and "Addresses" in bullets[0], ans.text
    assert_cited(ans.text, 1)


def test_list_from_subsections_names_each_item():
    parent = chunk("The control plane's components make global decisions about the cluster.",
                   heading="Control Plane Components", title="Components", ordinal=1)
    kids = [chunk(f"{text}", heading=f"Control Plane Components > {name}", title="Components",
                  ordinal=2 + k)
            for k, (name, text) in enumerate([
                ("kube-apiserver", "The API server exposes the Kubernetes API."),
                ("etcd", "A consistent key value store for all cluster data."),
                ("kube-scheduler", "It assigns newly created Pods to nodes.")])]
    ans = compose("What components make up the control plane?", "en", [parent],
                  siblings=lambda c: kids)
    assert [re.match(r"- \*\*([^*]+)\*\*", ln).group(1)
            for ln in ans.text.splitlines() if ln.startswith("- ")] == \
        ["kube-apiserver", "etcd", "kube-scheduler"], ans.text
    assert_cited(ans.text, len(ans.passages))


def test_definition_leads_with_the_defining_sentence():
    c = chunk("Operators back it up often. etcd is a consistent, highly available key-value "
              "store used for all cluster data. It uses the Raft algorithm to agree on writes. "
              "Clusters usually run three or five members.", title="etcd")
    ans = compose("What is etcd?", "en", [c])
    first = answer_sentences(ans.text)[0]
    assert first.startswith("etcd is a consistent"), ans.text
    assert 2 <= len(answer_sentences(ans.text)) <= 4
    assert_cited(ans.text, 1)


def test_comparison_has_a_paragraph_per_side():
    a = chunk("A Secret is an object that holds a small amount of sensitive data such as a "
              "password or a token.", title="Secrets", source="en/secret.md")
    b = chunk("A ConfigMap is an API object used to store non-confidential data in key-value "
              "pairs.", title="ConfigMaps", source="en/configmap.md")
    both = chunk("Unlike a ConfigMap, a Secret is meant for confidential data and can be "
                 "encrypted at rest.", title="Secrets", source="en/secret.md", ordinal=2)
    ans = compose("What is the difference between a Secret and a ConfigMap?", "en", [both, a, b],
                  side_passages=[[a], [b]])
    paragraphs = ans.text.split("\n\n")
    assert paragraphs[0].startswith("A Secret is") and paragraphs[1].startswith("A ConfigMap is")
    assert paragraphs[2].startswith("**Key difference:**") and "Unlike a ConfigMap" in paragraphs[2]
    assert_cited(ans.text, len(ans.passages))


def test_sentences_are_whole_and_never_repeated():
    c1 = chunk("The kubelet runs on every node. It starts the containers of the Pods bound to "
               "its node.", title="kubelet")
    c2 = chunk("The kubelet runs on every node. It reports the node's status to the API "
               "server.", title="kubelet", source="en/other.md")
    ans = compose("What does the kubelet do?", "en", [c1, c2])
    sents = [re.sub(r"\s*\[\d+\]$", "", s) for s in answer_sentences(ans.text)]
    assert len(sents) == len(set(sents)), ans.text
    assert all(s.endswith((".", "。")) for s in sents), sents


def test_other_language_evidence_is_marked():
    zh = chunk("etcd 是一个一致且高可用的键值存储，保存集群的全部数据。", lang="zh",
               source="zh/etcd.md", title="etcd")
    ans = compose("What is etcd?", "en", [zh])
    assert ans.text.startswith(OTHER_LANG["en"]) and ans.other_language
    same = compose("What is etcd?", "en", [zh, chunk("etcd is a key-value store for cluster data.",
                                                      title="etcd")])
    assert OTHER_LANG["en"] not in same.text and sentence_lang(answer_sentences(same.text)[0]) == "en"


def test_checks_used_by_eval():
    assert cited("etcd 是键值存储。 [2]", 2) and not cited("etcd 是键值存储。 [3]", 2)
    assert not cited("no citation here.", 5)
    assert answer_sentences("**kube-apiserver**: Serves the API. [1] Uses `.spec.ports[*]` too. [2]") \
        == ["Serves the API. [1]", "Uses `.spec.ports[*]` too. [2]"]
    assert sentence_lang("Run `kubectl get pods`. [1]") == "en"
    assert sentence_lang("运行 `kubectl get pods`。 [1]") == "zh"


# --- follow-ups --------------------------------------------------------------------

def _topics(text: str) -> list[str]:
    return [w for w in re.findall(r"etcd|kubelet|kube-proxy|控制平面", text)]


@pytest.mark.parametrize("question,history,expected", [
    ("它的数据怎么备份？", ["etcd 的作用是什么？"], "etcd 的数据怎么备份？"),
    ("and how do I restore it?", ["What is etcd?"], "how do I restore etcd?"),
    ("那 kubelet 呢？", ["etcd 的作用是什么？"], "kubelet 的作用是什么？"),
    ("What is kube-proxy?", ["What is etcd?"], "What is kube-proxy?"),
    ("它怎么恢复？", ["etcd 是什么？", "它的数据怎么备份？"], "etcd 怎么恢复？"),
])
def test_followups_resolve_to_the_earlier_topic(question, history, expected):
    turns = [{"question": q, "answer": ""} for q in history]
    assert resolve(question, turns, _topics) == expected


# --- through the knowledge base ------------------------------------------------------

def test_followup_through_kb_searches_the_earlier_topic(kb):
    res = kb.ask("它的数据怎么备份？", history=[{"question": "etcd 的作用是什么？", "answer": "…"}])
    assert "etcd" in res["searched_query"]
    assert res["passages"][0]["source"].endswith("etcd.md"), res["passages"][0]
    alone = kb.ask("它的数据怎么备份？")
    assert alone["searched_query"] == "它的数据怎么备份？"


def test_english_followup_through_kb(kb):
    res = kb.ask("and how do I restore it?", history=[{"question": "What is etcd?", "answer": "…"}])
    assert "etcd" in res["searched_query"] and res["question_type"] == "procedure"
    assert any(p["source"].endswith("etcd.md") for p in res["passages"][:3])
    assert "restore" in res["answer"].lower()


@pytest.mark.parametrize("question", ["etcd 的作用是什么？", "What does kube-proxy do?",
                                      "How do I install kubeadm?", "kubeadm 如何加入工作节点？",
                                      "控制平面和数据平面有什么区别？", "控制平面有哪些组件？"])
def test_kb_answers_are_cited_and_in_the_askers_language(kb, question):
    res = kb.ask(question)
    assert res["found"]
    sents = assert_cited(res["answer"], len(res["passages"]))
    assert all(sentence_lang(s) == res["lang"] for s in sents), res["answer"]
    assert res["mode"] == "extractive" and res["mode_note"] is None


def test_not_found_offers_nearby_topics(kb):
    res = kb.ask("How do I bake a chocolate cake?")
    assert res["found"] is False and res["passages"] == []
    assert 1 <= len(res["suggestions"]) <= 3
    for s in res["suggestions"]:
        assert s["title"] and s["url"].startswith("/articles/") and s["title"] in res["answer"]
    zh = kb.ask("今天上海的天气怎么样？")
    assert zh["answer"].startswith("抱歉") and "知识库涵盖的相关主题" in zh["answer"]


def test_comparison_through_kb_uses_both_articles(kb):
    res = kb.ask("What is the difference between the control plane and the data plane?")
    assert res["question_type"] == "comparison"
    paragraphs = res["answer"].split("\n\n")
    assert len(paragraphs) >= 2
    assert "control plane" in paragraphs[0].lower() and "data plane" in paragraphs[1].lower()


def test_eval_reports_answer_metrics(kb, tmp_path):
    from kbqa.evaluate import evaluate, load_questions

    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"id": "a", "lang": "zh", "question": "etcd 的作用是什么？", '
                  '"gold": ["etcd.md"], "answer_any": ["键值"]}\n'
                  '{"id": "b", "lang": "en", "question": "How do I install kubeadm?", '
                  '"gold": ["kubeadm-install.md"], "answer_any": ["apt-get"]}\n', encoding="utf-8")
    res = evaluate(kb, load_questions(qa))
    s = res["overall"]
    assert s["cited"] == 1.0 and s["in_language"] == 1.0
    assert s["answer_chars"] > 50 and s["answer_hit"] is not None


def test_procedure_takes_steps_from_another_page_only_when_its_title_is_asked_about():
    jobs = chunk("A Job runs Pods until a given number of them complete successfully. "
                 "Use a Job for batch tasks that must finish.", source="en/job.md", title="Jobs")
    steps = ("Check that the rollout is complete:\n\n"
             "1. Run the status command for the rollout of the application.\n\n"
             "   ```shell\n   kubectl rollout status deployment/web\n   ```\n\n"
             "2. Read the exit code of the command when it completes successfully.\n\n"
             "   ```shell\n   echo $?\n   ```")
    other = chunk(steps, source="en/deployment.md", title="Deployments",
                  heading="Complete Deployment", ordinal=5)
    q = "How do I run a batch task until it completes successfully?"
    out = compose(q, "en", [jobs, other], qtype="procedure")
    assert "kubectl rollout status" not in out.text
    assert "Job" in out.text
    # The same steps on a page whose title the question names are used.
    named = chunk(steps, source="en/rollouts.md", title="Rollout status", heading="Check",
                  ordinal=5)
    out = compose("How do I check the rollout status until it completes?", "en",
                  [jobs, named], qtype="procedure")
    assert "kubectl rollout status" in out.text
