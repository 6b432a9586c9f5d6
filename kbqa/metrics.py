"""Prometheus metrics: ``GET /metrics`` in the text exposition format.

What is measured:

* every HTTP request, by Flask endpoint name (``api.query``; ``unmatched`` for
  unknown paths and wrong methods, so a scanner cannot create label values) and
  status: ``kbqa_http_requests_total`` and ``kbqa_http_request_duration_seconds``
  (1 ms … 5 s buckets; for ``/api/query/stream`` the time until the stream starts);
* answers by outcome (``kbqa_answers_total{found, mode}``) and rate-limited
  requests (``kbqa_rate_limited_total{endpoint}``);
* re-indexes started by the admin API: ``kbqa_reindex_total{result}``, the unix
  time of the last completion and of the last success (equal: the last one
  succeeded), the last duration, and whether one is running;
* the index being served, read at scrape time from the app's KnowledgeBase (so a
  hot swap shows at once): ``kbqa_index_info{version, kbqa_version}``, chunks,
  documents, skipped pages, vectors per encoder, bytes on disk, build time;
* ``kbqa_worker_processes``: processes counted into this scrape.

``kbqa serve`` runs several gunicorn workers, each with its own memory. There
the metrics live in prometheus-client's multiprocess mode: every process writes
its values to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape,
whichever worker answers it, adds them all up (kbqa/server.py prepares the
folder before the workers fork and forgets dead workers' live gauges). Without
that variable (Flask's server, tests) the metrics are ordinary in-process values.

The metric objects are made once per process, not per app: the tests create
many apps in one process, and a metric registered twice is an error.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from flask import Blueprint, Response, current_app, g, request

# Latency of our endpoints: answers take milliseconds to a few hundred ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
                   1.0, 2.5, 5.0)
UNMATCHED = "unmatched"  # the endpoint label of requests no route matched

metrics_api = Blueprint("metrics", __name__)

_LOCK = threading.Lock()
_METRICS: "_Metrics | None" = None


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Metrics:
    """This process's metric objects (made on first use, see ``get``)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

        # Multiprocess when the value class writes to files: chosen by
        # prometheus-client from PROMETHEUS_MULTIPROC_DIR (see use_multiprocess).
        self.multiprocess = bool(getattr(values.ValueClass, "_multiprocess", False))
        # Our own registry, not the global one: nothing else's metrics leak in,
        # and a second set (see use_multiprocess) can be made in the same process.
        self.registry = r = CollectorRegistry()
        self.requests = Counter("kbqa_http_requests", "HTTP requests answered, by Flask "
                                "endpoint and status", ["endpoint", "status"], registry=r)
        self.latency = Histogram("kbqa_http_request_duration_seconds", "Time to answer an HTTP "
                                 "request (for a stream: until it starts), by endpoint and "
                                 "status", ["endpoint", "status"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.answers = Counter("kbqa_answers", "Answers given by /api/query and "
                               "/api/query/stream: found (true/false) and how written "
                               "(extractive/llm)", ["found", "mode"], registry=r)
        self.rate_limited = Counter("kbqa_rate_limited", "Requests refused with 429 by the "
                                    "rate limit", ["endpoint"], registry=r)
        self.reindex = Counter("kbqa_reindex", "Admin re-indexes finished, by result "
                               "(success/failure)", ["result"], registry=r)
        # Timestamps: the newest of any process, dead workers included.
        self.reindex_last = Gauge("kbqa_reindex_last_completion_timestamp_seconds",
                                  "Unix time the last admin re-index finished (either result)",
                                  multiprocess_mode="max", registry=r)
        self.reindex_last_success = Gauge("kbqa_reindex_last_success_timestamp_seconds",
                                          "Unix time the last successful admin re-index "
                                          "finished", multiprocess_mode="max", registry=r)
        self.reindex_last_seconds = Gauge("kbqa_reindex_last_duration_seconds", "How long the "
                                          "last admin re-index took",
                                          multiprocess_mode="mostrecent", registry=r)
        # Live gauges: a dead worker's value is dropped (server.py's child_exit).
        self.reindex_running = Gauge("kbqa_reindex_in_progress", "Admin re-indexes running "
                                     "now", multiprocess_mode="livesum", registry=r)
        self.workers = Gauge("kbqa_worker_processes", "Processes serving requests (gunicorn "
                             "workers) whose metrics this scrape adds up",
                             multiprocess_mode="livesum", registry=r)

    def collector(self):
        """What a scrape reads: every process's files, or this process's registry."""
        if self.multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            return MultiProcessCollector(None, path=multiprocess_dir())
        return self.registry


def get() -> _Metrics:
    global _METRICS
    if _METRICS is None:
        with _LOCK:
            if _METRICS is None:
                _METRICS = _Metrics()
    return _METRICS


def use_multiprocess(path: str) -> None:
    """Switch this process to multiprocess metrics in ``path`` before workers fork.

    prometheus-client picks its value class when it is first imported, from
    PROMETHEUS_MULTIPROC_DIR. ``kbqa serve`` sets the variable before anything
    imports it; should it have been imported already (a caller that made an
    app first), the class is switched here and our metric objects are made
    anew, so that every value lives in the shared files.
    """
    global _METRICS
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    from prometheus_client import values

    with _LOCK:
        if not getattr(values.ValueClass, "_multiprocess", False):
            values.ValueClass = values.MultiProcessValue()
        if _METRICS is not None and not _METRICS.multiprocess:
            _METRICS = None


def worker_started() -> None:
    """Count this process as a serving worker (gunicorn's post_fork, or a lone server)."""
    get().workers.set(1)


# --- recording ----------------------------------------------------------------

def _endpoint() -> str:
    rule = request.url_rule
    return rule.endpoint if rule is not None else UNMATCHED


def _start_timer() -> None:
    g.kbqa_started = time.perf_counter()


def _record(resp):
    started = g.pop("kbqa_started", None)
    m = get()
    endpoint, status = _endpoint(), str(resp.status_code)
    m.requests.labels(endpoint, status).inc()
    if started is not None:
        m.latency.labels(endpoint, status).observe(time.perf_counter() - started)
    if resp.status_code == 429:
        m.rate_limited.labels(endpoint).inc()
    return resp


def answered(response: dict) -> None:
    """An answer was given (``KnowledgeBase.ask``'s response)."""
    get().answers.labels("true" if response.get("found") else "false",
                         response.get("mode") or "extractive").inc()


def reindex_started() -> None:
    get().reindex_running.inc()


def reindex_finished(ok: bool, seconds: float) -> None:
    m = get()
    now = time.time()
    m.reindex_running.dec()
    m.reindex.labels("success" if ok else "failure").inc()
    m.reindex_last.set(now)
    if ok:
        m.reindex_last_success.set(now)
    m.reindex_last_seconds.set(seconds)


def init_app(app) -> None:
    """Count every request of ``app``; serve ``/metrics`` unless metrics are disabled.

    Call before other blueprints are registered: the timer starts before their
    ``before_request`` functions run.
    """
    if not app.config["KBQA"].metrics_enabled:
        return
    m = get()
    if not m.multiprocess:
        m.workers.set(1)  # this process; under gunicorn each worker counts itself
    app.before_request(_start_timer)
    app.after_request(_record)
    app.register_blueprint(metrics_api)


# --- the index, read at scrape time ---------------------------------------------

class IndexCollector:
    """Gauges of the index the app's KnowledgeBase serves now (one version per request)."""

    _sizes: dict[str, int] = {}  # version folder -> bytes; a version is never modified

    def __init__(self, kb):
        self.kb = kb

    @classmethod
    def _bytes(cls, path: Path) -> int:
        key = str(path)
        if key not in cls._sizes:
            total = 0
            for p in path.rglob("*"):
                try:
                    total += p.stat().st_size if p.is_file() else 0
                except OSError:
                    pass
            cls._sizes[key] = total
        return cls._sizes[key]

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

        from kbqa.index import IndexError_

        loaded = GaugeMetricFamily("kbqa_index_loaded", "1 if an index is loaded and served")
        try:
            idx = self.kb.index
        except IndexError_:
            loaded.add_metric([], 0)
            yield loaded
            return
        loaded.add_metric([], 1)
        yield loaded
        m = idx.manifest
        info = InfoMetricFamily("kbqa_index", "The index version served")
        info.add_metric([], {"version": idx.path.name, "kbqa_version": str(m.get("kbqa_version"))})
        yield info
        for name, value, text in (
                ("kbqa_index_chunks", m.get("chunks"), "Passages (chunks) in the served index"),
                ("kbqa_index_documents", m.get("documents"), "Pages in the served index"),
                ("kbqa_index_skipped_documents", len(m.get("skipped", [])),
                 "Files skipped by the build of the served index"),
                ("kbqa_index_size_bytes", self._bytes(idx.path),
                 "Bytes on disk of the served index version")):
            if value is not None:
                yield GaugeMetricFamily(name, text, value=float(value))
        built = _unix(m.get("built_at"))
        if built is not None:
            yield GaugeMetricFamily("kbqa_index_built_timestamp_seconds",
                                    "Unix time the served index was built", value=built)
        vectors = GaugeMetricFamily("kbqa_index_vectors", "Dense vectors in the served index, "
                                    "by encoder", labels=["encoder"])
        for enc, dense in idx.dense.items():
            n = getattr(dense, "ntotal", None)
            if n is not None:
                vectors.add_metric([enc], float(n))
        yield vectors


def _unix(stamp) -> float | None:
    import calendar

    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return None


class _Scrape:
    def __init__(self, *collectors):
        self.collectors = collectors

    def collect(self):
        for c in self.collectors:
            yield from c.collect()


@metrics_api.get("/metrics")
def metrics():
    from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

    scrape = _Scrape(get().collector(), IndexCollector(current_app.extensions["kbqa"]))
    return Response(generate_latest(scrape), content_type=CONTENT_TYPE_PLAIN_0_0_4,
                    headers={"Cache-Control": "no-store"})
