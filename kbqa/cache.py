"""A local cache for what the packages ship in a slow-to-load form.

jieba keeps its prefix dictionary as one marshalled dict (1.1–1.4 s to load
here) and the USE encoder its weights in a compressed npz (0.5 s to inflate
and reassemble). Both are the same bytes on every start, so kbqa keeps them
once in a form that loads in a fraction of that: the dictionary as a word list
plus an int array, the encoder weights as plain ``.npy`` files that are
memory-mapped (and so shared by every process on the machine).

Entries are keyed by a digest of everything they derive from (package version,
source file size and mtime, our own dictionary terms), written to a temporary
name and renamed, so a crash or a concurrent writer never leaves a torn entry;
a stale or unreadable entry is simply rebuilt. Where no folder is writable
(a read-only container) the cache is skipped and the slow path is taken.

Location: ``KBQA_CACHE_DIR``, else ``$XDG_CACHE_HOME/kbqa``, else
``~/.cache/kbqa``, else a folder in the system temp directory. A container
image fills it at build time (``python -m kbqa.cache``) and sets
``KBQA_CACHE_DIR`` to it, so a pod with a read-only root starts fast too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

# Read here, not a Config field: the tokenizer and the encoder load before any
# configuration exists (and in processes that never make one).
ENV = "KBQA_CACHE_DIR"

_checked: dict[str, Path | None] = {}


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe-", delete=True)
        probe.close()
        return True
    except OSError:
        return False


def cache_dir() -> Path | None:
    """The cache folder, or None when there is none to use.

    ``KBQA_CACHE_DIR`` is used as given, even read-only: an image can ship a
    cache built at image-build time. The default places must be writable.
    """
    env = os.environ.get(ENV, "")
    if env in _checked:
        return _checked[env]
    if env:
        path = Path(env)
        found = path if path.is_dir() or _writable(path) else None
    else:
        candidates: list[Path] = []
        xdg = os.environ.get("XDG_CACHE_HOME")
        if xdg:
            candidates.append(Path(xdg) / "kbqa")
        candidates.append(Path.home() / ".cache" / "kbqa")
        candidates.append(Path(tempfile.gettempdir()) / f"kbqa-cache-{os.getuid()}")
        found = next((c for c in candidates if _writable(c)), None)
    _checked[env] = found
    return found


def key(*parts: object) -> str:
    """A short digest of what an entry is derived from."""
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def file_stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def entry(name: str, digest: str) -> Path | None:
    """Folder of a complete entry, or None (missing, or no cache here)."""
    root = cache_dir()
    if root is None:
        return None
    path = root / f"{name}-{digest}"
    return path if (path / "COMPLETE").exists() else None


def discard(path: Path) -> None:
    """Remove an entry that failed to load, so the next store can replace it."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    try:
        os.rename(path, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def store(name: str, digest: str, write) -> Path | None:
    """Create an entry with ``write(folder)``; atomic, and never raises.

    Returns the entry's folder, or None when it could not be written (the
    caller then carries on with what it already has in memory).
    """
    root = cache_dir()
    if root is None:
        return None
    final = root / f"{name}-{digest}"
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    except OSError:  # a read-only cache: use it, do not add to it
        return None
    try:
        write(tmp)
        (tmp / "COMPLETE").write_bytes(b"")
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide it from other users (an image's)
        # Older entries of the same name are dropped (a package upgrade).
        for old in root.glob(f"{name}-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:  # another process got there first: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
        return final if (final / "COMPLETE").exists() else None
    except Exception:  # noqa: BLE001 — a cache must never break the caller
        shutil.rmtree(tmp, ignore_errors=True)
        return None


def fill() -> list[Path]:
    """Create every entry now (``python -m kbqa.cache``, e.g. in an image build)."""
    from kbqa import segment
    from kbqa.embed import USEEmbedder

    segment.tokenize("预热")
    USEEmbedder().load()
    root = cache_dir()
    return sorted(p for p in root.iterdir() if (p / "COMPLETE").exists()) if root else []


if __name__ == "__main__":
    entries = fill()
    if not entries:
        raise SystemExit("kbqa cache: no writable cache folder; set KBQA_CACHE_DIR to one")
    for path in entries:
        print(path)
