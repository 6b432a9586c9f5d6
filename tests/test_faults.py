"""Faults around a build: a full disk or a read-only index folder.

The build must fail with one clear line, leave no half-written version, and the
previous index must go on answering.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kbqa.kb import KnowledgeBase
from tests.conftest import CORPUS, ROOT, make_config


def _index(*args: str, preexec=None, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "kbqa.cli", "index", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600, preexec_fn=preexec)


def _assert_previous_index_serves(index_dir: Path, version: str) -> None:
    assert (index_dir / "CURRENT").read_text().strip() == version
    assert not [p for p in index_dir.iterdir() if p.name.startswith(".tmp")], list(index_dir.iterdir())
    _assert_loads_and_answers(index_dir)


def _assert_loads_and_answers(index_dir: Path) -> None:
    kb = KnowledgeBase(make_config(index_dir=index_dir))
    hits = kb.search("etcd snapshot backup", top_k=3).hits
    assert hits and kb.index.chunks[hits[0].index].source.endswith("etcd.md")


def _one_clear_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture()
def small_corpus(tmp_path) -> Path:
    """Two of our articles: enough to index, quick to embed."""
    src = tmp_path / "src"
    for lang in ("en", "zh"):
        (src / lang).mkdir(parents=True)
        shutil.copy(CORPUS / lang / "etcd.md", src / lang / "etcd.md")
    return src


def _limit_file_size(limit: int):
    def apply() -> None:
        # Past the limit a write fails with EFBIG, as on a full disk, instead
        # of the default SIGXFSZ killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_file_size_limit_during_build_keeps_previous_index(small_corpus, tmp_path):
    index_dir = tmp_path / "index"
    first = _index("--source", str(small_corpus), "--index-dir", str(index_dir))
    assert first.returncode == 0, first.stderr
    version = (index_dir / "CURRENT").read_text().strip()
    (small_corpus / "en" / "etcd.md").write_text(
        (small_corpus / "en" / "etcd.md").read_text() + "\n\nA new paragraph about etcd.\n")
    proc = _index("--full", "--source", str(small_corpus), "--index-dir", str(index_dir),
                  preexec=_limit_file_size(20_000))
    line = _one_clear_line(proc)
    assert "cannot write the index" in line and "File too large" in line
    _assert_previous_index_serves(index_dir, version)


def _can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = Path(f"/tmp/kbqa-mount-probe-{uuid.uuid4().hex[:6]}")
    probe.mkdir()
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], check=True)
        return ok
    finally:
        probe.rmdir()


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root and mount (tmpfs) here")


@pytest.fixture()
def tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@needs_mount
def test_disk_full_during_build_keeps_previous_index(small_corpus, tmpfs):
    index_dir = tmpfs / "index"
    first = _index("--source", str(small_corpus), "--index-dir", str(index_dir))
    assert first.returncode == 0, first.stderr
    version = (index_dir / "CURRENT").read_text().strip()
    # Fill the disk, leaving too little for a second version.
    free = shutil.disk_usage(tmpfs).free
    (tmpfs / "ballast").write_bytes(b"\0" * max(0, free - 64 * 1024))
    proc = _index("--full", "--source", str(small_corpus), "--index-dir", str(index_dir))
    line = _one_clear_line(proc)
    assert "No space left on device" in line
    (tmpfs / "ballast").unlink()
    _assert_previous_index_serves(index_dir, version)


@needs_mount
def test_read_only_index_folder(small_corpus, tmpfs):
    index_dir = tmpfs / "index"
    first = _index("--source", str(small_corpus), "--index-dir", str(index_dir))
    assert first.returncode == 0, first.stderr
    version = (index_dir / "CURRENT").read_text().strip()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    try:
        proc = _index("--full", "--source", str(small_corpus), "--index-dir", str(index_dir))
        line = _one_clear_line(proc)
        assert "Read-only file system" in line, line
        _assert_loads_and_answers(index_dir)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
    _assert_previous_index_serves(index_dir, version)
