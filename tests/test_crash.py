"""A build killed at any moment leaves a complete, loadable index; damage is reported clearly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kbqa.index import IndexError_, load_index
from kbqa.kb import KnowledgeBase
from tests.conftest import CORPUS, ROOT, make_config, run_cli

PAGES = ["en/etcd.md", "en/kubelet.md", "zh/etcd.md"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One small index for the module; each test leaves it complete for the next."""
    tmp_path = tmp_path_factory.mktemp("crash")
    src = tmp_path / "src"
    for rel in PAGES:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / rel, src / rel)
    cfg = make_config(index_dir=tmp_path / "idx", sources=(src,))
    KnowledgeBase(cfg).build()
    return src, cfg


def _current(cfg) -> str:
    return (cfg.index_dir / "CURRENT").read_text().strip()


def _answers(cfg) -> None:
    """The index that CURRENT names loads (checksums verified) and answers a query."""
    kb = KnowledgeBase(cfg)
    hits = kb.search("What is etcd?").hits
    assert hits and kb.index.chunks[hits[0].index].source.endswith("etcd.md")


def _edit(src: Path, n) -> None:
    with open(src / "en" / "kubelet.md", "a", encoding="utf-8") as fh:
        fh.write(f"\nEdit number {n}: the kubelet reports node status to the API server.\n")


@pytest.mark.parametrize("stage", ["parsed", "embedded", "written", "renamed", "switched"])
def test_kill_at_each_step_keeps_a_loadable_index(built, stage):
    src, cfg = built
    old = _current(cfg)
    _edit(src, stage)
    r = run_cli("index", "--source", str(src), "--index-dir", str(cfg.index_dir),
                env={"KBQA_TEST_CRASH_AT": stage})
    assert r.returncode == 137, r.stderr  # died where it was told to, like kill -9
    if stage == "switched":
        assert _current(cfg) != old  # the switch is the last step: the new version serves
    else:
        assert _current(cfg) == old
    _answers(cfg)
    # The next build cleans up after the dead one and picks up the edit.
    report = KnowledgeBase(cfg).build()
    assert report.up_to_date == (stage == "switched")
    assert not list(cfg.index_dir.glob(".tmp-*")) and len(list(cfg.index_dir.glob("v-*"))) <= 2
    _answers(cfg)


def test_random_kill_9_during_full_builds(built):
    """Real SIGKILLs at moments nobody chose: the index that serves is always complete."""
    src, cfg = built
    killed = 0
    for n, delay in enumerate((0.5, 2.0, 4.5)):
        _edit(src, n)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
        proc = subprocess.Popen([sys.executable, "-m", "kbqa.cli", "index", "--full", "--source",
                                 str(src), "--index-dir", str(cfg.index_dir)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        killed += proc.wait(timeout=60) == -signal.SIGKILL  # else it had finished
        load_index(cfg.index_dir)  # raises on any missing or damaged file
        _answers(cfg)
    assert killed >= 2  # a cold full build takes longer than the first delays
    report = KnowledgeBase(cfg).build()
    assert not list(cfg.index_dir.glob(".tmp-*")) and not list(cfg.index_dir.glob(".CURRENT.*"))
    assert report.version == _current(cfg) or report.up_to_date


def test_damaged_index_file_fails_in_one_line_and_an_incremental_build_repairs(built):
    src, cfg = built
    version = cfg.index_dir / _current(cfg)
    faiss_file = next(version.glob("dense-*.faiss"))
    data = bytearray(faiss_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    faiss_file.write_bytes(bytes(data))
    r = run_cli("ask", "What is etcd?", "--index-dir", str(cfg.index_dir))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and faiss_file.name in lines[0] and "kbqa index --full" in lines[0]
    with pytest.raises(IndexError_, match=faiss_file.name):
        load_index(cfg.index_dir)
    r = run_cli("index", "--source", str(src), "--index-dir", str(cfg.index_dir))
    assert r.returncode == 0, r.stderr
    assert f"full build (the current index is damaged ({faiss_file.name}))" in r.stdout
    _answers(cfg)
