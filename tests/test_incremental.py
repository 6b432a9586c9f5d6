"""Incremental builds: only what changed is processed, and the result equals a full build."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from kbqa.index import BuildLock, IndexBusy, load_index
from kbqa.kb import KnowledgeBase
from tests.conftest import CORPUS, ROOT, make_config, run_cli

PAGES = ["en/etcd.md", "en/kubelet.md", "en/pods.md", "zh/etcd.md", "zh/kubelet.md"]


def _copy(pages: list[str], dest: Path) -> Path:
    for rel in pages:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / rel, dest / rel)
    return dest


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """A source indexed in full, then edited (one page changed, one removed, one added)
    and indexed again incrementally; plus a full build of the edited source."""
    tmp = tmp_path_factory.mktemp("incremental")
    src = _copy(PAGES, tmp / "docs")
    (src / "en" / "broken.md").write_text("---\ntitle: [oops\n---\nbody\n")
    cfg = make_config(index_dir=tmp / "idx", sources=(src,))
    kb = KnowledgeBase(cfg)
    first = kb.build()
    before = load_index(cfg.index_dir)
    with open(src / "en" / "kubelet.md", "a", encoding="utf-8") as fh:
        fh.write("\n## Restarts\n\nThe kubelet restarts containers that fail their liveness "
                 "probe, following the Pod's restartPolicy.\n")
    (src / "zh" / "etcd.md").unlink()
    _copy(["en/kube-proxy.md"], src)
    second = kb.build()
    full_cfg = make_config(index_dir=tmp / "full", sources=(src,))
    full = KnowledgeBase(full_cfg).build(full=True)
    return {"src": src, "cfg": cfg, "kb": kb, "first": first, "second": second, "full": full,
            "before": before, "full_cfg": full_cfg}


def test_first_build_is_full_and_lists_skipped_files(edited):
    first = edited["first"]
    assert first.full and first.full_reason == "no index yet"
    assert len(first.added) == 5 and first.embedded == first.chunks
    assert [(s.source, "front matter" in s.reason) for s in first.skipped] == [("en/broken.md", True)]


def test_incremental_build_processes_only_what_changed(edited):
    r = edited["second"]
    assert not r.full
    assert r.added == ["docs:en/kube-proxy.md"]
    assert r.changed == ["docs:en/kubelet.md"]
    assert r.removed == ["docs:zh/etcd.md"]
    assert r.unchanged == 3  # the broken file stays skipped: it counts there only
    assert [s.source for s in r.skipped] == ["en/broken.md"]
    # Only new text is embedded: kube-proxy's chunks and the kubelet chunk that changed.
    idx = load_index(edited["cfg"].index_dir)
    new_chunks = [c for c in idx.chunks if c.source == "en/kube-proxy.md"]
    assert 0 < r.embedded <= len(new_chunks) + 2
    assert r.reused == r.chunks - r.embedded and r.reused > r.embedded
    sources = {c.source for c in idx.chunks}
    assert "zh/etcd.md" not in sources and "en/kube-proxy.md" in sources
    assert any("liveness probe" in c.text for c in idx.chunks if c.source == "en/kubelet.md")
    assert "docs:zh/etcd.md" not in idx.manifest["files"]


def test_incremental_index_equals_a_full_build(edited):
    inc = load_index(edited["cfg"].index_dir)
    full = load_index(edited["full_cfg"].index_dir)
    assert [asdict(c) for c in inc.chunks] == [asdict(c) for c in full.chunks]
    for name, index in inc.dense.items():
        a = index.reconstruct_n(0, index.ntotal)
        b = full.dense[name].reconstruct_n(0, full.dense[name].ntotal)
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-4)
    assert inc.lexicon == full.lexicon and inc.glossary == full.glossary
    assert inc.manifest["files"] == full.manifest["files"]
    assert inc.manifest["abstention"] == full.manifest["abstention"]
    assert inc.links == full.links
    from kbqa.segment import tokenize

    q = tokenize("How does the kubelet restart containers?")
    for bm_a, bm_b in ((inc.bm25, full.bm25), (inc.bm25_title, full.bm25_title)):
        assert np.allclose(bm_a.get_scores(q), bm_b.get_scores(q))


def test_incremental_answers_from_the_changed_and_added_pages(edited):
    kb = edited["kb"]
    hits = kb.search("What does kube-proxy do?").hits
    assert kb.index.chunks[hits[0].index].source == "en/kube-proxy.md"
    res = kb.ask("What does the kubelet do when a liveness probe fails?")
    assert res["found"] and any(p["source"] == "en/kubelet.md" for p in res["passages"])


def test_no_change_writes_no_new_version(edited):
    cfg = edited["cfg"]
    current = (cfg.index_dir / "CURRENT").read_text()
    versions = sorted(p.name for p in cfg.index_dir.glob("v-*"))
    r = KnowledgeBase(cfg).build()
    assert r.up_to_date and r.added == r.changed == r.removed == [] and r.embedded == 0
    assert (cfg.index_dir / "CURRENT").read_text() == current
    assert sorted(p.name for p in cfg.index_dir.glob("v-*")) == versions
    assert "index is up to date" in r.summary()


def test_old_versions_are_pruned_to_the_current_and_previous_one(edited):
    cfg = edited["cfg"]
    versions = sorted(p.name for p in cfg.index_dir.glob("v-*"))
    current = (cfg.index_dir / "CURRENT").read_text().strip()
    assert len(versions) == 2 and current in versions
    assert not list(cfg.index_dir.glob(".tmp-*"))


def test_lexicon_from_cached_counts_equals_domain_terms(edited):
    """The cached-count lexicon must stay the same arithmetic as segment.domain_terms."""
    from collections import Counter

    from kbqa.segment import domain_terms, domain_terms_from_counts, words

    texts = [c.embed_text() for c in load_index(edited["cfg"].index_dir).chunks]
    counts = Counter()
    for t in texts:
        counts.update(words(t))
    zipf: dict = {}
    assert domain_terms_from_counts(counts, zipf) == domain_terms(texts)
    assert zipf and domain_terms_from_counts(counts, zipf) == domain_terms(texts)  # from the cache


def test_chunker_change_forces_a_full_build_and_says_so(tmp_path):
    src = _copy(["en/etcd.md", "en/pods.md"], tmp_path / "src")
    idx = tmp_path / "idx"
    r = run_cli("index", "--source", str(src), "--index-dir", str(idx))
    assert r.returncode == 0, r.stderr
    assert "full build (no index yet): added 2, changed 0, removed 0" in r.stdout
    r = run_cli("index", "--source", str(src), "--index-dir", str(idx))
    assert r.returncode == 0 and "index is up to date" in r.stdout
    r = run_cli("index", "--source", str(src), "--index-dir", str(idx),
                env={"KBQA_CHUNK_CHARS_EN": "600"})
    assert r.returncode == 0, r.stderr
    assert "full rebuild: chunker settings changed (chunk_chars_en 900 -> 600)" in r.stderr
    assert "full build (chunker settings changed" in r.stdout
    m = json.loads((idx / (idx / "CURRENT").read_text().strip() / "manifest.json").read_text())
    assert m["chunker"]["chunk_chars_en"] == 600
    # Plain log lines, not a progress bar, when stderr is not a terminal.
    assert "\r" not in r.stderr and "chunks/s" in r.stderr


def test_encoder_change_forces_a_full_build(tmp_path):
    src = _copy(["en/etcd.md"], tmp_path / "src")
    idx = tmp_path / "idx"
    assert run_cli("index", "--source", str(src), "--index-dir", str(idx)).returncode == 0
    r = run_cli("index", "--source", str(src), "--index-dir", str(idx), "--encoder", "minilm")
    assert r.returncode == 0, r.stderr
    assert "encoders changed (use-multilingual-v3 -> all-MiniLM-L6-v2)" in r.stderr
    assert "full build (encoders changed" in r.stdout and "0 reused" in r.stdout
    m = json.loads((idx / (idx / "CURRENT").read_text().strip() / "manifest.json").read_text())
    assert [e["name"] for e in m["encoders"]] == ["all-MiniLM-L6-v2"]


def test_full_flag_rebuilds_everything(tmp_path):
    src = _copy(["en/etcd.md"], tmp_path / "src")
    idx = tmp_path / "idx"
    assert run_cli("index", "--source", str(src), "--index-dir", str(idx)).returncode == 0
    r = run_cli("index", "--full", "--source", str(src), "--index-dir", str(idx))
    assert r.returncode == 0 and "full build (--full): added 1" in r.stdout
    assert "0 reused" in r.stdout


def test_two_sources_with_the_same_paths_never_collide(tmp_path):
    a = tmp_path / "a" / "docs" / "en"
    b = tmp_path / "b" / "docs" / "en"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    shutil.copy(CORPUS / "en" / "etcd.md", a / "page.md")
    shutil.copy(CORPUS / "en" / "kubelet.md", b / "page.md")
    cfg = make_config(index_dir=tmp_path / "idx", sources=(a.parent, b.parent))
    kb = KnowledgeBase(cfg)
    r = kb.build()
    assert sorted(r.added) == ["docs-2:en/page.md", "docs:en/page.md"]
    assert kb.article("docs", "en/page.md")["title"] != kb.article("docs-2", "en/page.md")["title"]
    assert {c.collection for c in kb.index.chunks} == {"docs", "docs-2"}
    with open(b / "page.md", "a", encoding="utf-8") as fh:
        fh.write("\nOne more sentence about the kubelet.\n")
    r = kb.build()
    assert r.changed == ["docs-2:en/page.md"] and r.added == r.removed == [] and r.unchanged == 1


def test_glossary_definition_change_reparses_pages_that_use_it(tmp_path):
    src = tmp_path / "src"
    (src / "en" / "reference" / "glossary").mkdir(parents=True)
    term = src / "en" / "reference" / "glossary" / "widget.md"
    term.write_text("---\ntitle: Widget\nid: widget\nshort_description: >\n  A widget spins "
                    "cogs.\n---\nA widget spins cogs.\n")
    (src / "en" / "page.md").write_text("---\ntitle: Machines\n---\n# Machines\n\n"
                                        '{{< glossary_definition term_id="widget" length="all" >}}'
                                        "\n\nMachines are made of parts.\n")
    cfg = make_config(index_dir=tmp_path / "idx", sources=(src,))
    kb = KnowledgeBase(cfg)
    kb.build()
    assert any("spins cogs" in c.text for c in kb.index.chunks if c.source == "en/page.md")
    term.write_text(term.read_text().replace("spins cogs", "turns gears"))
    r = kb.build()
    assert sorted(r.changed) == ["src:en/page.md", "src:en/reference/glossary/widget.md"]
    page = [c.text for c in kb.index.chunks if c.source == "en/page.md"]
    assert any("turns gears" in t for t in page) and not any("spins cogs" in t for t in page)


# --- lock ---------------------------------------------------------------------


def test_a_second_build_is_refused_while_one_holds_the_lock(tmp_path):
    src = _copy(["en/etcd.md"], tmp_path / "src")
    idx = tmp_path / "idx"
    idx.mkdir()
    with BuildLock(idx):
        r = run_cli("index", "--source", str(src), "--index-dir", str(idx))
        assert r.returncode == 1 and "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"another build (pid {os.getpid()})" in lines[0]
        with pytest.raises(IndexBusy):
            BuildLock(idx).__enter__()  # also within one process (e.g. admin + CLI code)
    r = run_cli("index", "--source", str(src), "--index-dir", str(idx))
    assert r.returncode == 0, r.stderr


def test_the_lock_of_a_killed_build_is_released(tmp_path):
    idx = tmp_path / "idx"
    idx.mkdir()
    code = ("import sys, time; from kbqa.index import BuildLock; "
            f"BuildLock({str(idx)!r}).__enter__(); print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(IndexBusy, match=f"pid {proc.pid}"):
            BuildLock(idx).__enter__()
        proc.kill()  # SIGKILL: no clean-up code runs
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    while True:  # the kernel releases the flock as the process is reaped
        try:
            with BuildLock(idx):
                break
        except IndexBusy:
            assert time.monotonic() < deadline, "lock still held after its holder died"
            time.sleep(0.1)
