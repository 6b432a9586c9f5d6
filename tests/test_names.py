"""The names people type (kubectl short names, "master", kinds) and lists kept whole."""

from __future__ import annotations

import re

import pytest

from kbqa.answer import units
from kbqa.glossary import canonical_names, kind_names
from kbqa.retrieve import domain_words
from kbqa.segment import _split_long


@pytest.mark.parametrize("question, expected", [
    ("PV 和 PVC 是什么关系？", "PersistentVolume 和 PersistentVolumeClaim 是什么关系？"),
    ("How do I list svc and netpol objects?",
     "How do I list Service and NetworkPolicy objects?"),
    ("What is an HPA?", "What is an HorizontalPodAutoscaler?"),
    ("master 节点上运行哪些组件？", "控制平面节点上运行哪些组件？"),
    ("Master节点有哪些组件", "控制平面节点有哪些组件"),
    ("What runs on the master nodes?", "What runs on the control plane nodes?"),
])
def test_short_and_legacy_names_are_written_as_the_docs_write_them(question, expected):
    assert canonical_names(question) == expected
    assert canonical_names(expected) == expected  # idempotent


@pytest.mark.parametrize("question", [
    "How do I deploy an app?",           # a verb, not the short name of Deployment
    "no pods are running",               # "no" is kubectl's short name for nodes
    "mount /etc/pv/data into the pod",   # inside a path
    "10 cm of rain",                     # two-letter short names only in capitals
    "merge into the master branch",      # master without "node" in English
])
def test_words_that_only_look_like_short_names_are_left_alone(question):
    assert canonical_names(question) == question


def test_kinds_count_as_domain_words_when_written_as_kinds():
    assert kind_names("What types of Service are there?") == ["service"]
    assert kind_names("Service 有哪几种类型？") == ["service"]
    assert kind_names("service 类型有哪些") == ["service"]  # Latin letters in Chinese
    assert kind_names("How does a Job differ from a CronJob?") == ["job", "cronjob"]
    # Lower case, or first word of an English sentence: the everyday word.
    assert kind_names("How do I find a job in tech?") == []
    assert kind_names("Service was slow at the restaurant.") == []
    assert "service" in domain_words("What types of Service are there?", [], {})
    assert domain_words("How do I find a job in tech?", [], {}) == []


def test_kind_named_in_a_question_is_answered_not_refused(kb):
    assert kb.search("What types of Service are there?").found
    assert kb.search("Service 有哪几种类型？").found


def test_long_list_split_into_pieces_keeps_one_item_a_line():
    items = [f"- **item {k}**: " + "words " * 30 for k in range(8)]
    pieces = _split_long("\n".join(items), 400)
    assert len(pieces) > 1
    assert all(line.startswith("- **item") for p in pieces for line in p.split("\n"))
    assert sum(len(p.split("\n")) for p in pieces) == 8


def test_table_rows_are_list_items_after_their_introduction():
    text = ("Kubernetes 提供这些功能：\n\n| 功能 | 说明 |\n|---|---|\n"
            "| 自愈 | 自动重启崩溃的容器 |\n| 扩缩容 | 按指标调整副本数 |\n| 调度 | 把 Pod 放到合适的节点 |")
    us = units(text)
    assert [u.kind for u in us] == ["intro", "item", "item", "item"]
    assert us[1].text == "自愈: 自动重启崩溃的容器"
    assert len({u.group for u in us[1:]}) == 1


def test_list_answer_takes_the_whole_section_across_chunks(kb):
    """corpus/zh/what-is-kubernetes.md lists six advantages, cut into two chunks."""
    out = kb.ask("Kubernetes 有哪些优点？")
    bullets = [ln for ln in out["answer"].split("\n") if ln.startswith("- ")]
    assert len(bullets) >= 6, out["answer"]
    assert all(re.search(r"\[\d+\]$", b) for b in bullets)
    out = kb.ask("Master 节点上运行哪些组件？")
    assert out["searched_query"] == "控制平面节点上运行哪些组件？"
    for name in ("kube-apiserver", "etcd", "kube-scheduler", "kube-controller-manager"):
        assert name in out["answer"], out["answer"]


def test_two_things_asked_for_get_a_list_each_under_its_own_introduction(kb):
    out = kb.ask("Kubernetes 有哪些优点和缺点？")
    text = out["answer"]
    bullets = [ln for ln in text.split("\n") if ln.startswith("- ")]
    assert len(bullets) >= 10, text
    good, bad = text.find("优点："), text.find("缺点：")
    assert 0 <= good < text.find("高可用") < bad < text.find("学习门槛高"), text
