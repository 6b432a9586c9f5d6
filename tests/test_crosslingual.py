"""Glossary mining, query expansion, Traditional Chinese, language linking."""

from kbqa.glossary import (build_glossary, choose_pairs, mine_headings, mine_parenthetical,
                           translate_terms)
from kbqa.retrieve import Hit, collapse_linked, to_simplified
from kbqa.segment import Chunk, _tokenizer


def cut(text):
    return _tokenizer()[0].lcut(text)


PARALLEL_ZH = [
    "集群由控制平面（Control Plane）和若干工作节点组成。",
    "调度器会检查节点上的污点（Taint），而 Pod 需要声明容忍度（Toleration）。",
    "每个节点都运行容器运行时（Container Runtime）。",
    "通过设置服务质量类（QoS Class）来区分 Pod。",
    "我们的服务质量类（QoS Class）有三种。",
]


def test_parenthetical_pairs_are_cut_at_the_term_boundary():
    pairs = dict((en, zh) for zh, en in choose_pairs(mine_parenthetical(PARALLEL_ZH, cut)))
    assert pairs["control plane"] == "控制平面"
    assert pairs["taint"] == "污点" and pairs["toleration"] == "容忍度"
    assert pairs["container runtime"] == "容器运行时"
    assert pairs["qos class"] == "服务质量类"  # not 设置服务质量类 nor 的服务质量类


def test_heading_pairs_drop_shared_names():
    pairs = mine_headings([("Kubernetes 组件", "Kubernetes Components"),
                           ("控制平面组件", "Control Plane Components"),
                           ("一个很长的标题不会被当作术语来使用的", "A very long heading")])
    assert ("组件", "components") in pairs and ("控制平面组件", "control plane components") in pairs
    assert all(len(zh) <= 8 for zh, _ in pairs)


def test_query_expansion_both_ways_longest_match_first():
    g = build_glossary([("节点亲和性", "node affinity"), ("服务质量类", "qos class")])
    assert "node affinity" in translate_terms("节点亲和性怎么配置？", g)
    assert "affinity" not in translate_terms("节点亲和性怎么配置？", g)  # not split
    zh = translate_terms("How do taints and tolerations work?", g)
    assert "污点" in zh and "容忍度" in zh  # plurals match the singular terms
    assert "服务质量类" in translate_terms("Which QoS class does my Pod get?", g)
    assert translate_terms("What is the capital of France?", g) == []


def test_traditional_chinese_is_normalised():
    assert to_simplified("控制平面由哪些組件組成？") == "控制平面由哪些组件组成？"
    assert to_simplified("叢集的節點") == "集群的节点"  # Taiwan phrasing mapped too
    assert to_simplified("etcd 的作用是什么？") == "etcd 的作用是什么？"
    assert to_simplified("What is etcd?") == "What is etcd?"


def test_traditional_question_finds_the_same_page(kb):
    simp = [h.index for h in kb.search("kube-proxy 的作用是什么？").hits]
    trad = [h.index for h in kb.search("kube-proxy 的作用是什麼？").hits]
    assert simp == trad


def _chunk(i, lang, anchor):
    return Chunk(id=str(i), doc_id="d", collection="c", source=f"{lang}/p.md", lang=lang,
                 title="t", heading="h", anchor=anchor, text="x", ordinal=i)


def test_collapse_keeps_the_askers_language_and_never_duplicates():
    chunks = [_chunk(0, "en", "a"), _chunk(1, "zh", "a"), _chunk(2, "en", "b")]
    links = {0: 1, 1: 0}
    hits = [Hit(0, 0.9), Hit(2, 0.8), Hit(1, 0.7)]
    zh = collapse_linked([Hit(h.index, h.score) for h in hits], links, chunks, "zh")
    assert [h.index for h in zh] == [1, 2] and zh[0].score == 0.9
    en = collapse_linked([Hit(h.index, h.score) for h in hits], links, chunks, "en")
    assert [h.index for h in en] == [0, 2]


def test_search_results_never_hold_both_language_versions(kb):
    links = kb.index.links
    assert links, "the corpus has both languages, so linked passages exist"
    for q in ("etcd 的作用是什么？", "What does kube-proxy do?", "什么是 Pod？", "What is kubectl?"):
        ids = {h.index for h in kb.search(q, top_k=10).hits}
        assert not any(links.get(i) in ids for i in ids), q


def test_index_keeps_a_mined_glossary(kb):
    g = kb.index.glossary
    assert g["zh2en"]["控制平面"][0] == "control plane"
    mined = {zh for zh in g["zh2en"]} - {zh for zhs, _ in __import__("kbqa.glossary").glossary.PAIRS
                                          for zh in zhs}
    assert len(mined) >= 20  # pairs mined from the corpus itself, beyond the core list


import pytest  # noqa: E402


@pytest.mark.parametrize("index_lang,question,article", [
    ("en", "调度器如何为 Pod 选择节点？", "kube-scheduler.md"),
    ("en", "怎样用快照备份和恢复 etcd？", "etcd.md"),
    ("en", "kube-proxy 的 IPVS 模式", "kube-proxy.md"),
    ("zh", "How do I back up etcd with a snapshot?", "etcd.md"),
    ("zh", "What are the differences between the control plane and the data plane?",
     "control-plane-and-data-plane.md"),
    ("zh", "Which cgroup driver should the kubelet and containerd use?", "container-runtime.md"),
])
def test_questions_find_pages_that_exist_only_in_the_other_language(
        single_language_kbs, index_lang, question, article):
    kb = single_language_kbs[index_lang]
    res = kb.search(question, top_k=3)
    assert res.found
    sources = [kb.index.chunks[h.index].source for h in res.hits]
    assert any(s.endswith(article) for s in sources), sources


def test_cross_language_lists_only_search_the_other_language(single_language_kbs):
    kb = single_language_kbs["en"]
    # A Chinese question over English pages: the glossary carries it across.
    assert any(t in translate_terms("控制平面和数据平面有什么区别？", kb.index.glossary)
               for t in ("control plane", "data plane"))
    assert kb.index.lang_share["en"] == 1.0


@pytest.mark.parametrize("question,article", [
    ("控制平面和数据平面有什么区别？", "control-plane-and-data-plane.md"),
    ("调度器怎样给节点打分？", "kube-scheduler.md"),
    ("容器运行时接口是什么？", "container-runtime.md"),
])
def test_lexical_search_crosses_languages_through_the_glossary(single_language_kbs, question,
                                                               article):
    # Lexical only, Chinese words only, English pages only: without the glossary's
    # translations BM25 has nothing to match.
    kb = single_language_kbs["en"]
    res = kb.search(question, top_k=3, mode="bm25")
    sources = [kb.index.chunks[h.index].source for h in res.hits]
    assert any(s.endswith(article) for s in sources), sources
