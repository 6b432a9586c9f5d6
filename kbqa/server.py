"""Production serving: gunicorn workers over one index loaded before they fork.

The master loads the index, the encoder and the jieba dictionary and answers
one warm-up question, then forks. Workers share those pages copy-on-write
(FAISS vectors, BM25 matrices, model weights), so N workers cost far less
than N loads, and no worker pays a first-request penalty. Each worker notices
a new index version by itself (``KnowledgeBase.index``) and swaps it in
between requests.
"""

from __future__ import annotations

import errno
import socket

from gunicorn.app.base import BaseApplication

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


def serve(cfg: Config, kb: KnowledgeBase, workers: int, threads: int) -> None:
    check_port(cfg.host, cfg.port)
    kb.warm()
    app = create_app(cfg, kb=kb)
    _Gunicorn(app, options(cfg, workers, threads)).run()
