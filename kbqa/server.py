"""Production serving: gunicorn workers over one index loaded before they fork.

The master loads the index, the encoder and the jieba dictionary and answers
one warm-up question, then forks. Workers share those pages copy-on-write
(FAISS vectors, BM25 matrices, model weights), so N workers cost far less
than N loads, and no worker pays a first-request penalty. Each worker notices
a new index version by itself (``KnowledgeBase.index``) and swaps it in
between requests.

``GET /metrics`` must add up all the workers: before anything forks, the
metrics are switched to prometheus-client's multiprocess mode in a folder of
this run (PROMETHEUS_MULTIPROC_DIR, emptied, or a new temporary one), each
worker counts itself in when forked, and a dead worker's live gauges are
dropped (``child_exit``); see kbqa/metrics.py.
"""

from __future__ import annotations

import errno
import gc
import glob
import os
import shutil
import socket
import tempfile

from gunicorn.app.base import BaseApplication

from kbqa import metrics
from kbqa.app import create_app
from kbqa.config import Config
from kbqa.kb import KnowledgeBase


class ServeError(RuntimeError):
    """The server cannot start; the message says why and what to do."""


class _Gunicorn(BaseApplication):
    def __init__(self, app, options: dict):
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self.application


def check_port(host: str, port: int) -> None:
    """Fail in one line before gunicorn prints its own multi-line retries."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ServeError(f"cannot listen on {host}:{port} ({why}); pick another --port") from None


def options(cfg: Config, workers: int, threads: int) -> dict:
    return {
        "bind": f"{cfg.host}:{cfg.port}",
        "workers": workers,
        # Threads let a worker wait on slow clients; queries themselves are
        # CPU-bound, so the useful parallelism is the number of workers.
        "worker_class": "gthread",
        "threads": threads,
        "preload_app": True,
        "timeout": 120,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "kbqa",
    }


def metrics_dir() -> tuple[str, bool]:
    """The folder the workers' metrics are shared in, emptied; and whether it is ours.

    PROMETHEUS_MULTIPROC_DIR if set (its ``*.db`` files, left by an earlier run,
    are removed: they would add old counts to this one's), else a new temporary
    folder for this run, removed when the server stops.
    """
    given = metrics.multiprocess_dir()
    if given:
        os.makedirs(given, exist_ok=True)
        for f in glob.glob(os.path.join(given, "*.db")):
            os.remove(f)
        return given, False
    return tempfile.mkdtemp(prefix="kbqa-metrics-"), True


def _post_fork(server, worker) -> None:
    metrics.worker_started()


def _child_exit(server, worker) -> None:
    # Drop the dead worker's live gauges (its counters stay in the totals).
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def serve(cfg: Config, kb: KnowledgeBase, workers: int, threads: int) -> None:
    check_port(cfg.host, cfg.port)
    opts = options(cfg, workers, threads)
    folder, owned = None, False
    if cfg.metrics_enabled:
        # Before any metric exists: the workers fork with it and all write there.
        folder, owned = metrics_dir()
        metrics.use_multiprocess(folder)
        opts.update(post_fork=_post_fork, child_exit=_child_exit)
    master = os.getpid()
    try:
        kb.warm()
        app = create_app(cfg, kb=kb)
        # Everything loaded so far lives as long as the server: moved out of
        # the collector's reach, a worker's collections no longer write to
        # (and so copy) the pages it shares with the master.
        gc.collect()
        gc.freeze()
        _Gunicorn(app, opts).run()
    finally:
        # Workers leave through here too (a forked stack): only the master cleans up.
        if owned and os.getpid() == master:
            shutil.rmtree(folder, ignore_errors=True)
