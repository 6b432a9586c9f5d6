"""Runtime configuration: one dataclass, overridable with ``KBQA_*`` variables.

Every knob lives here so that the CLI, the Flask app and the tests agree on the
defaults, and so that an operator can change them without touching code.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


@dataclass
class Config:
    # Where the built index lives and which folders are indexed by default.
    index_dir: Path = field(default_factory=lambda: Path("index"))
    sources: tuple[Path, ...] = field(default_factory=lambda: (Path("corpus"),))
    # Dense encoders stored in the index; the first one is used by "hybrid".
    encoders: tuple[str, ...] = ("use",)
    # Retrieval mode: "hybrid" (BM25 + dense, fused), "bm25", "dense".
    mode: str = "hybrid"
    # Chunk targets in characters: Chinese carries ~3x the meaning per char.
    chunk_chars_en: int = 900
    chunk_chars_zh: int = 400
    # Candidates taken from each retriever before fusion, and the RRF constant.
    candidates: int = 50
    rrf_k: int = 60
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    title_weight: float = 1.0
    cross_weight: float = 1.0
    collapse_languages: int = 1
    # Dense index type by size (measured in benchmarks/scale.py): exact search
    # up to this many chunks (a flat scan of every vector: ~20 ms a query at
    # 100k on two cores, ~200 ms at 1M, 2 KB per vector); above it IVF with
    # 8-bit codes whose candidates are re-ranked on the exact vectors.
    exact_search_max_vectors: int = 100_000
    # IVF lists (0: 2·√N), candidates re-ranked per result wanted, and the
    # recall@10 against exact search the build tunes the lists probed to reach.
    ivf_lists: int = 0
    ivf_refine_factor: int = 4
    ivf_min_recall: float = 0.98
    # Out-of-domain guard (cosine of the best dense hit): at or above the
    # strong score a question is in domain; between the two it needs a word
    # characteristic of the knowledge base; below min it is refused. The strong
    # score is fitted per index on off-topic probes (manifest "abstention");
    # setting it here overrides the fitted value.
    min_dense_score: float = 0.15
    strong_dense_score: float | None = None
    # Share of the off-topic calibration probes the fitted guard may let through.
    abstention_tolerance: float = 0.03
    default_top_k: int = 5
    max_top_k: int = 50
    max_question_chars: int = 2000
    # Largest request body accepted (413 above it).
    max_body_bytes: int = 64 * 1024
    # Queries per client address (flask-limiter syntax, e.g. "120/minute;20/second");
    # "off" disables. Counted per worker process.
    rate_limit: str = "120/minute;20/second"
    # Addresses never limited: the machine itself (the chat page opened
    # locally, scripts, load tests). Behind a proxy, set trusted_proxies.
    rate_limit_exempt: str = "127.0.0.1,::1"
    # Reverse proxies in front of kbqa whose X-Forwarded-For is believed.
    trusted_proxies: int = 0
    # Origins allowed to call /api from other sites (comma list, "*" for any);
    # empty: CORS off.
    cors_origins: str = ""
    # Earlier turns a follow-up may lean on (the request's "history").
    max_history_turns: int = 10
    # Optional language model: an OpenAI-compatible /v1/chat/completions
    # endpoint (Ollama, vLLM, ...). Unset: extractive answers only. Slower than
    # the timeout, unreachable or failing: the extractive answer, said so.
    llm_url: str | None = None
    llm_model: str | None = None
    llm_timeout: float = 30.0
    llm_api_key: str | None = None
    # Query encoding runs single-threaded: BLAS oversubscription on small
    # inputs costs far more than it gains (measured in benchmarks/).
    query_threads: int = 1
    build_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    host: str = "127.0.0.1"
    port: int = 8000
    # `kbqa serve`: gunicorn workers (processes; queries are CPU-bound, so one
    # per core) and threads per worker (for slow clients, not for speed).
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    threads: int = 4
    # Bearer token of /api/admin/* (KBQA_ADMIN_TOKEN). Unset: those endpoints answer
    # 403 and do nothing; they are never open.
    admin_token: str | None = None
    web_dir: Path = field(default_factory=lambda: _project_root() / "web")
    # Readers' 👍/👎 feedback (SQLite). Kept out of index/: a rebuild or
    # `make clean` must never delete what people said.
    feedback_db: Path = field(default_factory=lambda: Path("var/feedback.sqlite3"))
    # GET /metrics (Prometheus text format). Off: the path is a 404 and requests
    # are not counted.
    metrics_enabled: bool = True

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> "Config":
        """Defaults, then ``KBQA_<FIELD>`` variables, then explicit overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"KBQA_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _coerce(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(**values)
        cfg.index_dir = Path(cfg.index_dir)
        cfg.sources = tuple(Path(s) for s in cfg.sources)
        cfg.web_dir = Path(cfg.web_dir)
        cfg.feedback_db = Path(cfg.feedback_db)
        return cfg


def _coerce(f: dataclasses.Field, raw: str) -> Any:
    """Turn an environment string into the field's type (tuples are comma lists)."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if "tuple" in kind:
            items = [p.strip() for p in raw.split(",") if p.strip()]
            return tuple(Path(p) for p in items) if "Path" in kind else tuple(items)
        if kind == "bool":
            word = raw.strip().lower()
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind in ("float", "float | None"):
            return float(raw)
        if kind == "Path":
            return Path(raw)
        return raw
    except ValueError as exc:
        raise ValueError(f"KBQA_{f.name.upper()}={raw!r} is not a valid {kind}") from exc
