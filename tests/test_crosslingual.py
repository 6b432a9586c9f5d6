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
