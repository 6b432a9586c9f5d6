"""sync-docs: keep a copy of the official Kubernetes docs and index it incrementally.

The kubernetes/website repository is large (images, blog, every language);
only ``content/<lang>/docs`` is needed. So the first sync is a shallow
(``--depth 1``), blob-less (``--filter=blob:none``) clone with a sparse
checkout of those folders; later syncs fetch the one new commit and check it
out. The pages then appear under ``<dest>/k8s-docs/<lang>/...`` (hard links to
the checkout, so no second copy on disk): the layout of the docs the rest of
kbqa reads, where the language is the first folder and ``kubernetes.io`` links
and glossary definitions resolve. The incremental index then re-embeds only
the pages the new commit touched.

Everything runs the real ``git``; a plain folder path as ``--repo`` is turned
into a ``file://`` URL, since git ignores ``--depth`` for plain local paths.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_REPO = "https://github.com/kubernetes/website"
DEFAULT_REF = "main"
DEFAULT_LANGS = ("en", "zh-cn")
DOCS_FOLDER = "k8s-docs"  # also the collection name of the synced pages
_LANG = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")
GIT_TIMEOUT = 1800  # a first clone of the real repository over a slow link


class SyncError(RuntimeError):
    """The sync failed; the message says what went wrong and what to change."""


@dataclass
class SyncResult:
    repo: str
    ref: str
    commit: str
    checkout: Path
    docs_dir: Path
    cloned: bool  # a first clone (else a fetch into the existing checkout)
    pages: dict[str, int] = field(default_factory=dict)  # lang -> Markdown files
    seconds: float = 0.0

    def summary(self) -> str:
        pages = ", ".join(f"{n} {lang}" for lang, n in self.pages.items())
        how = "cloned" if self.cloned else "fetched"
        return (f"{how} {self.repo} {self.ref} at {self.commit[:12]}: {pages} pages in "
                f"{self.docs_dir}/ ({self.seconds:.1f}s)")


def default_dest(index_dir: Path) -> Path:
    """Next to the index versions: ignored by git, dropped by ``make clean`` like them."""
    return Path(index_dir) / "sources" / "kubernetes-website"


def repo_url(repo: str) -> str:
    """A local folder as a file:// URL (git makes shallow clones only over a transport)."""
    if "://" not in repo and not re.match(r"^[\w.-]+@[\w.-]+:", repo) and Path(repo).is_dir():
        return Path(repo).resolve().as_uri()
    return repo


def _git(args: list[str], cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true",
           "LC_ALL": "C"}
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env,
                             timeout=GIT_TIMEOUT)
    except FileNotFoundError:
        raise SyncError("git is not installed; install it (e.g. apt-get install git) and run "
                        "sync-docs again") from None
    except subprocess.TimeoutExpired:
        raise SyncError(f"git {args[0]} took longer than {GIT_TIMEOUT}s; check the network "
                        "and run sync-docs again (it resumes from what it has)") from None
    if out.returncode != 0:
        lines = [ln.strip() for ln in out.stderr.splitlines()
                 if ln.strip() and not ln.startswith("warning:")]
        reason = lines[-1] if lines else f"exit code {out.returncode}"
        raise SyncError(f"git {args[0]} failed: {reason}")
    return out.stdout


def sync_docs(repo: str = DEFAULT_REPO, ref: str = DEFAULT_REF,
              langs: tuple[str, ...] = DEFAULT_LANGS, dest: Path | None = None) -> SyncResult:
    """Clone or update the sparse checkout in ``dest`` and refresh ``dest/k8s-docs``."""
    started = time.perf_counter()
    langs = tuple(dict.fromkeys(langs or DEFAULT_LANGS))
    for lang in langs:
        if not _LANG.match(lang):
            raise SyncError(f"--lang {lang!r} is not a language folder of the website; use e.g. "
                            "--lang en --lang zh-cn")
    if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
        raise SyncError(f"--ref {ref!r} is not a branch, tag or commit; use e.g. --ref main")
    dest = Path(dest if dest is not None else "k8s-website")
    url = repo_url(repo)
    checkout = dest / "website"
    folders = [f"content/{lang}/docs" for lang in langs]
    cloned = not (checkout / ".git").is_dir()
    if cloned:
        if checkout.exists():
            shutil.rmtree(checkout)  # a clone that was interrupted
        checkout.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkout.with_name(checkout.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            if _is_commit(ref):
                _git(["init", "-q", str(tmp)])
                _git(["remote", "add", "origin", url], tmp)
                _git(["sparse-checkout", "set", *folders], tmp)
                _git(["fetch", "-q", "--depth", "1", "origin", ref], tmp)
                _git(["checkout", "-q", "--detach", "FETCH_HEAD"], tmp)
            else:
                _git(["clone", "-q", "--depth", "1", "--filter=blob:none", "--sparse",
                      "--branch", ref, url, str(tmp)])
                _git(["sparse-checkout", "set", *folders], tmp)
        except SyncError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SyncError(f"{exc}; check --repo {repo} and --ref {ref}") from None
        os.rename(tmp, checkout)
    else:
        try:
            _git(["remote", "set-url", "origin", url], checkout)
            _git(["sparse-checkout", "set", *folders], checkout)
            _git(["fetch", "-q", "--depth", "1", "origin", ref], checkout)
            _git(["checkout", "-q", "-f", "--detach", "FETCH_HEAD"], checkout)
        except SyncError as exc:
            raise SyncError(f"{exc}; check --repo {repo} and --ref {ref}") from None
    commit = _git(["rev-parse", "HEAD"], checkout).strip()
    missing = [f for f in folders if not (checkout / f).is_dir()]
    if missing:
        raise SyncError(f"{repo} has no {missing[0]}/ at {ref}; check --lang and --ref")
    docs_dir = dest / DOCS_FOLDER
    pages = {lang: _mirror(checkout / f"content/{lang}/docs", docs_dir / lang)
             for lang in langs}
    for stale in docs_dir.iterdir() if docs_dir.is_dir() else []:
        if stale.name not in langs:  # a language no longer asked for
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    return SyncResult(repo=repo, ref=ref, commit=commit, checkout=checkout, docs_dir=docs_dir,
                      cloned=cloned, pages=pages, seconds=time.perf_counter() - started)


def _is_commit(ref: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{40}", ref))


def _mirror(src: Path, dst: Path) -> int:
    """Make ``dst`` hold the files of ``src`` (hard links, or copies across devices).

    A file git rewrote has a new inode; the link is replaced then, and files
    gone from ``src`` leave ``dst``. Returns the number of Markdown files.
    """
    dst.mkdir(parents=True, exist_ok=True)
    wanted: set[Path] = set()
    pages = 0
    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        rel = path.relative_to(src)
        wanted.add(rel)
        pages += path.suffix == ".md"
        target = dst / rel
        if target.exists() and os.path.samefile(path, target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.sync")
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copy2(path, tmp)
        os.replace(tmp, target)
    for path in sorted(dst.rglob("*"), reverse=True):
        rel = path.relative_to(dst)
        if path.is_file() and rel not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return pages
