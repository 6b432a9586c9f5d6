"""Admin API: start a background re-index and watch it, behind a bearer token.

    POST /api/admin/reindex   {"full": false}  -> 202, the build runs in a thread
    GET  /api/admin/status                      -> progress and the last result

Both need ``Authorization: Bearer <KBQA_ADMIN_TOKEN>``. With no token
configured they answer 403 and do nothing: an admin API that is open by
default is a hole, so it is off until someone chooses a secret. The token is
compared in constant time and never logged.

The blueprint also pins one index version per request for the whole app
(``before_app_request``): a re-index switches versions while answers are being
computed, and an answer must come from one version only.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request

from kbqa.index import IndexError_, Progress

log = logging.getLogger(__name__)
admin = Blueprint("admin", __name__, url_prefix="/api/admin")


def _error(status: int, code: str, message: str):
    resp = jsonify({"error": {"code": code, "message": message}})
    resp.status_code = status
    return resp


def _kb():
    return current_app.extensions["kbqa"]


@admin.before_app_request
def _pin_index() -> None:
    _kb().live.begin_request()


@admin.teardown_app_request
def _unpin_index(exc) -> None:
    _kb().live.end_request()


@admin.before_request
def _authorize():
    token = current_app.config["KBQA"].admin_token
    if not token:
        return _error(403, "admin_disabled", "the admin API is disabled: start the server with "
                      "KBQA_ADMIN_TOKEN set to enable it")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        resp = _error(401, "unauthorized", "send the header Authorization: Bearer "
                      "<KBQA_ADMIN_TOKEN>")
    elif not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        resp = _error(401, "invalid_token", "the bearer token is not this server's admin token")
    else:
        return None
    resp.headers["WWW-Authenticate"] = 'Bearer realm="kbqa-admin"'
    return resp


class StatusProgress(Progress):
    """Keeps the running build's stage and counts for GET /api/admin/status."""

    def __init__(self, job: "ReindexJob"):
        self.job = job

    def note(self, text: str) -> None:
        with self.job.lock:
            self.job.notes.append(text)

    def stage(self, name: str, total: int, unit: str) -> None:
        with self.job.lock:
            self.job.progress = {"stage": name, "done": 0, "total": total, "unit": unit}

    def advance(self, n: int = 1) -> None:
        with self.job.lock:
            if self.job.progress:
                self.job.progress["done"] += n


class ReindexJob:
    """At most one background re-index per app; remembers the last result."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running = False
        self.full = False
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.progress: dict | None = None
        self.notes: list[str] = []
        self.result: dict | None = None
        self.error: str | None = None

    def start(self, kb, sources: list[Path], full: bool) -> bool:
        with self.lock:
            if self.running:
                return False
            self.running, self.full = True, full
            self.started_at, self.finished_at = _now(), None
            self.progress, self.notes, self.error = None, [], None
        threading.Thread(target=self._run, args=(kb, sources, full), daemon=True,
                         name="kbqa-reindex").start()
        return True

    def _run(self, kb, sources: list[Path], full: bool) -> None:
        result, error = None, None
        try:
            result = kb.build(sources, full=full, progress=StatusProgress(self)).as_dict()
            log.info("admin re-index done: version %s", result["version"])
        except IndexError_ as exc:
            error = str(exc)
        except Exception as exc:  # the status must say it failed, whatever the reason
            log.exception("admin re-index failed")
            error = f"{type(exc).__name__}: {exc}"
        with self.lock:
            self.running, self.finished_at = False, _now()
            if result is not None:
                self.result = result
            self.error = error

    def status(self) -> dict:
        with self.lock:
            state = "running" if self.running else ("failed" if self.error else
                                                    ("done" if self.result else "idle"))
            return {"state": state, "running": self.running, "full": self.full,
                    "started_at": self.started_at, "finished_at": self.finished_at,
                    "progress": dict(self.progress) if self.progress else None,
                    "notes": list(self.notes), "last_result": self.result,
                    "last_error": self.error}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_JOBS_LOCK = threading.Lock()


def _job() -> ReindexJob:
    with _JOBS_LOCK:
        return current_app.extensions.setdefault("kbqa_reindex", ReindexJob())


def _sources(kb) -> list[Path]:
    """Re-index what the index was built from; the configured sources when there is none."""
    try:
        return [Path(s["path"]) for s in kb.index.manifest["sources"]]
    except IndexError_:
        return [Path(s) for s in kb.config.sources]


@admin.post("/reindex")
def reindex():
    body = {}
    if request.get_data():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error(400, "invalid_body", 'send a JSON object such as {"full": true}, '
                          "or no body")
    full = body.get("full", False)
    if not isinstance(full, bool):
        return _error(400, "invalid_full", "field 'full' must be true or false")
    kb = _kb()
    sources = _sources(kb)
    missing = [str(s) for s in sources if not s.is_dir()]
    if missing:
        return _error(409, "source_missing", f"source folder {missing[0]} does not exist on the "
                      "server; rebuild with `kbqa index --source DIR`")
    if not _job().start(kb, sources, full):
        return _error(409, "reindex_running", "a re-index is already running; "
                      "see GET /api/admin/status")
    log.info("admin re-index started (full=%s)", full)
    resp = jsonify({"status": "started", "full": full, "sources": [str(s) for s in sources],
                    "status_url": "/api/admin/status"})
    resp.status_code = 202
    return resp


@admin.get("/status")
def status():
    out = _job().status()
    try:
        out["serving"] = _kb().index.path.name
    except IndexError_:
        out["serving"] = None
    return jsonify(out)
