"""The out-of-domain guard: fitted per index on off-topic probes, kept in the manifest."""

from kbqa.retrieve import decide_found, fit_strong_threshold, offtopic_probes


def test_fit_lets_through_at_most_the_tolerated_share():
    probes = [(0.10 + i / 100, False) for i in range(30)]  # 0.10 .. 0.39
    strong = fit_strong_threshold(probes, min_dense=0.15, tolerance=0.0)
    assert strong > 0.39
    strong = fit_strong_threshold(probes, min_dense=0.15, tolerance=0.1)  # 3 may pass
    accepted = sum(d >= strong for d, _ in probes)
    assert accepted <= 3 and strong < 0.39


def test_probes_with_domain_words_use_the_budget_first():
    probes = [(0.30, True), (0.35, False), (0.20, False)] + [(0.1, False)] * 7
    # budget 1 is spent on the probe with domain words: 0.35 must be refused
    assert fit_strong_threshold(probes, min_dense=0.15, tolerance=0.1) > 0.35


def test_decision_rule():
    assert decide_found(0.50, False, 0.15, 0.45)
    assert decide_found(0.20, True, 0.15, 0.45)
    assert not decide_found(0.20, False, 0.15, 0.45)
    assert not decide_found(0.10, True, 0.15, 0.45)


def test_shipped_probes_are_bilingual_and_off_topic():
    probes = offtopic_probes()
    assert len(probes) >= 60
    assert any("\u4e00" <= ch <= "\u9fff" for p in probes for ch in p)
    assert not any("kube" in p.lower() or "pod" in p.lower().split() for p in probes)


def test_index_manifest_keeps_the_fitted_guard(kb):
    a = kb.index.manifest["abstention"]
    assert a["probes"] == len(offtopic_probes())
    assert a["min_dense"] < a["strong_dense"] < 1.0
    assert a["probes_accepted"] <= a["tolerance"] * a["probes"]


def test_in_domain_answered_and_out_of_domain_refused(kb):
    assert kb.search("etcd 的作用是什么？").found
    assert kb.search("How does a worker node join a kubeadm cluster?").found
    assert not kb.search("Which planet is closest to the sun?").found
    assert not kb.search("今天上海的天气怎么样？").found


def test_explicit_setting_overrides_the_fitted_value(corpus_index):
    from kbqa.kb import KnowledgeBase
    from tests.conftest import make_config

    strict = KnowledgeBase(make_config(index_dir=corpus_index, strong_dense_score=0.99,
                                       min_dense_score=0.99))
    assert not strict.search("etcd 的作用是什么？").found
