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
import json
import logging
import os
import threading
import time
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request

from kbqa import metrics
from kbqa.index import IndexError_, Progress, lock_holder

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
    """Passes the running build's stage and counts to the job's status file."""

    def __init__(self, job: "ReindexJob"):
        self.job = job
        self.current: dict | None = None

    def note(self, text: str) -> None:
        self.job.update(note=text)

    def stage(self, name: str, total: int, unit: str) -> None:
        self.current = {"stage": name, "done": 0, "total": total, "unit": unit}
        self.job.update(progress=self.current, force=True)

    def advance(self, n: int = 1) -> None:
        if self.current:
            self.current["done"] += n
            self.job.update(progress=self.current)


class ReindexJob:
    """A background re-index and its status, kept in ``<index>/.reindex-status.json``.

    ``kbqa serve`` runs several worker processes: the POST lands in one, the
    GET in any other, so the status lives in a file (replaced atomically), not
    in memory. Whether a build is really running is asked of the build lock,
    so a worker killed mid-build shows as interrupted, not as running forever.
    """

    FILE = ".reindex-status.json"

    def __init__(self, index_dir: Path):
        self.root = Path(index_dir)
        self.path = self.root / self.FILE
        self.lock = threading.Lock()
        self.running = False
        self._state: dict = {}
        self._written = 0.0

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _write(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.FILE}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(self._state, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)
        self._written = time.monotonic()

    def update(self, progress: dict | None = None, note: str | None = None,
               force: bool = False) -> None:
        """Record progress; written at most twice a second unless ``force``."""
        with self.lock:
            if progress is not None:
                self._state["progress"] = dict(progress)
            if note is not None:
                self._state.setdefault("notes", []).append(note)
            if force or note is not None or time.monotonic() - self._written >= 0.5:
                self._write()

    def start(self, kb, sources: list[Path], full: bool) -> str | None:
        """Start the build thread; else say why not (a build already running)."""
        with self.lock:
            holder = lock_holder(self.root)
            if self.running or holder:
                return f"a build (pid {holder or os.getpid()}) is already running"
            previous = self._read()
            self.running = True
            self._state = {"state": "running", "running": True, "full": full,
                           "pid": os.getpid(), "started_at": _now(), "finished_at": None,
                           "progress": None, "notes": [],
                           "last_result": previous.get("last_result"), "last_error": None}
            self._write()
        threading.Thread(target=self._run, args=(kb, sources, full), daemon=True,
                         name="kbqa-reindex").start()
        return None

    def _run(self, kb, sources: list[Path], full: bool) -> None:
        result, error = None, None
        started = time.monotonic()
        metrics.reindex_started()
        try:
            result = kb.build(sources, full=full, progress=StatusProgress(self)).as_dict()
            log.info("admin re-index done: version %s", result["version"])
        except IndexError_ as exc:
            error = str(exc)
        except Exception as exc:  # the status must say it failed, whatever the reason
            log.exception("admin re-index failed")
            error = f"{type(exc).__name__}: {exc}"
        metrics.reindex_finished(error is None, time.monotonic() - started)
        with self.lock:
            self.running = False
            self._state.update(state="failed" if error else "done", running=False,
                               finished_at=_now(), last_error=error)
            if result is not None:
                self._state["last_result"] = result
            self._write()

    def status(self) -> dict:
        with self.lock:
            running_here = self.running
        out = self._read() or {"state": "idle", "running": False, "full": False,
                               "started_at": None, "finished_at": None, "progress": None,
                               "notes": [], "last_result": None, "last_error": None}
        if out.get("running") and not running_here and not lock_holder(self.root):
            # The worker running it died (or was restarted) before it finished.
            out.update(state="failed", running=False,
                       last_error=f"the re-index in process {out.get('pid')} was interrupted "
                                  "before it finished; start it again")
        out.pop("pid", None)  # bookkeeping for the check above, not part of the API
        return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_JOBS_LOCK = threading.Lock()


def _job() -> ReindexJob:
    with _JOBS_LOCK:
        if "kbqa_reindex" not in current_app.extensions:
            current_app.extensions["kbqa_reindex"] = ReindexJob(_kb().config.index_dir)
        return current_app.extensions["kbqa_reindex"]


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
    busy = _job().start(kb, sources, full)
    if busy:
        return _error(409, "reindex_running", f"{busy}; see GET /api/admin/status")
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
