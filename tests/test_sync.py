"""sync-docs against a local git repository laid out like kubernetes/website."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kbqa.sync import SyncError, repo_url, sync_docs
from tests.conftest import CORPUS, DOCS, run_cli

CHANGED = "en/reference/glossary/kubectl.md"
REMOVED = "en/reference/glossary/deployment.md"
ADDED = "en/concepts/architecture/cri.md"


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                         env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                              "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
                              "HOME": str(cwd), "PATH": "/usr/bin:/bin:/usr/local/bin"})
    return out.stdout


@pytest.fixture(scope="module")
def website(tmp_path_factory):
    """A repository with content/<lang>/docs/... from a few dozen small pages of
    ../shared/k8s-docs (copied into tmp), plus files a sparse checkout must skip."""
    repo = tmp_path_factory.mktemp("website")
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")
                   if p.stat().st_size < 3000 and p.parent != DOCS)
    assert CHANGED in pages and REMOVED in pages and ADDED in pages and len(pages) > 30
    _git(repo, "init", "-q", "-b", "main")
    for rel in pages:
        if rel != ADDED:
            _put(repo, rel)
    (repo / "static" / "images").mkdir(parents=True)
    (repo / "static" / "images" / "big.svg").write_text("<svg/>")
    (repo / "content" / "en" / "blog").mkdir(parents=True)
    (repo / "content" / "en" / "blog" / "post.md").write_text("# not docs\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "first")
    return repo, pages


def _put(repo: Path, rel: str) -> None:
    lang, rest = rel.split("/", 1)
    dest = repo / "content" / lang / "docs" / rest
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DOCS / rel, dest)


def _second_commit(repo: Path) -> None:
    lang, rest = CHANGED.split("/", 1)
    with open(repo / "content" / lang / "docs" / rest, "a", encoding="utf-8") as fh:
        fh.write("\nkubectl also reads its settings from the KUBECONFIG variable.\n")
    lang, rest = REMOVED.split("/", 1)
    (repo / "content" / lang / "docs" / rest).unlink()
    _put(repo, ADDED)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "second: one page changed, one removed, one added")


def test_sync_docs_clones_then_fetches_and_reindexes_exactly_the_changes(website, tmp_path):
    repo, pages = website
    other = tmp_path / "articles" / "en"
    other.mkdir(parents=True)
    shutil.copy(CORPUS / "en" / "etcd.md", other / "etcd.md")
    dest, idx = tmp_path / "dest", tmp_path / "idx"
    args = ["sync-docs", "--repo", f"file://{repo}", "--dest", str(dest), "--index-dir", str(idx),
            "--source", str(other.parent)]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    n = len(pages) - 1
    assert f"full build (no index yet): added {n + 1}, changed 0, removed 0" in r.stdout
    assert "cloned file://" in r.stderr
    checkout = dest / "website"
    assert _git(checkout, "rev-parse", "--is-shallow-repository").strip() == "true"
    assert not (checkout / "static").exists() and not (checkout / "content" / "en" / "blog").exists()
    docs = dest / "k8s-docs"
    assert (docs / CHANGED).is_file() and (docs / "zh-cn").is_dir()

    _second_commit(repo)
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "fetched file://" in r.stderr
    assert "incremental build: added 1, changed 1, removed 1," in r.stdout
    assert f"unchanged {n - 1}," in r.stdout
    assert _git(checkout, "rev-list", "--count", "HEAD").strip() == "1"  # still shallow
    assert (_git(checkout, "rev-parse", "HEAD").strip()
            == _git(repo, "rev-parse", "HEAD").strip())
    manifest = json.loads((idx / (idx / "CURRENT").read_text().strip() / "manifest.json").read_text())
    files = manifest["files"]
    assert f"k8s-docs:{ADDED}" in files and f"k8s-docs:{REMOVED}" not in files
    assert "articles:en/etcd.md" in files
    assert not (docs / REMOVED).exists() and (docs / ADDED).is_file()
    r = run_cli("ask", "What is the container runtime interface?", "--json", "--index-dir",
                str(idx))
    assert r.returncode == 0, r.stderr
    top = json.loads(r.stdout)["passages"][0]
    assert top["source"] in (ADDED, "en/reference/glossary/container-runtime-interface.md")
    assert top["url"].startswith("https://kubernetes.io/docs/")

    r = run_cli(*args)  # nothing new upstream
    assert r.returncode == 0 and "index is up to date" in r.stdout


def test_sync_errors_are_one_line(website, tmp_path):
    repo, _ = website
    r = run_cli("sync-docs", "--repo", str(tmp_path / "missing"), "--dest", str(tmp_path / "d"),
                "--index-dir", str(tmp_path / "i"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "git clone failed" in r.stderr and "--repo" in r.stderr
    with pytest.raises(SyncError, match="content/fr/docs"):
        sync_docs(str(repo), "main", ("fr",), tmp_path / "d2")
    with pytest.raises(SyncError, match="--lang"):
        sync_docs(str(repo), "main", ("../etc",), tmp_path / "d3")
    with pytest.raises(SyncError, match="--ref"):
        sync_docs(str(repo), "--upload-pack=x", ("en",), tmp_path / "d4")
    assert repo_url(str(repo)) == repo.resolve().as_uri()


def test_sync_at_a_commit(website, tmp_path):
    repo, _ = website
    head = _git(repo, "rev-parse", "HEAD").strip()
    res = sync_docs(str(repo), head, ("en",), tmp_path / "d")
    assert res.commit == head and res.pages["en"] > 10 and not (res.docs_dir / "zh-cn").exists()
