"""Answer feedback: 👍/👎 with an optional comment, kept in SQLite.

Why SQLite in WAL mode: the server answers on several threads (waitress) and an
operator may export while it runs. WAL lets readers and one writer proceed
together, and every write opens its own short connection with a generous busy
timeout, so concurrent ratings queue instead of failing: none is lost.

Why feedback failures stay local: the store is opened lazily, only by the
feedback endpoint. A missing folder, a full disk or a corrupt file answers
``503`` on ``POST /api/feedback`` and leaves ``/api/query`` answering.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, jsonify, request

MAX_COMMENT_CHARS = 2000
MAX_QUESTION_CHARS = 2000
MAX_ANSWER_CHARS = 20000
MAX_PASSAGES = 50
BUSY_TIMEOUT_S = 30.0

# The request body, as JSON Schema (2020-12). The OpenAPI document reuses it,
# so what is validated here is exactly what is documented.
FEEDBACK_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rating", "question", "answer"],
    "properties": {
        "rating": {"type": "string", "enum": ["up", "down"],
                   "description": "👍 (`up`) or 👎 (`down`)."},
        "comment": {"type": "string", "maxLength": MAX_COMMENT_CHARS,
                    "description": "Optional free text from the reader."},
        "question": {"type": "string", "minLength": 1, "maxLength": MAX_QUESTION_CHARS,
                     "description": "The question as the reader asked it."},
        "answer": {"type": "string", "maxLength": MAX_ANSWER_CHARS,
                   "description": "The answer's Markdown as shown."},
        "passages": {
            "type": "array", "maxItems": MAX_PASSAGES,
            "description": "The cited sources, in the answer's [n] order.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "source"],
                "properties": {
                    "id": {"type": "string", "maxLength": 500},
                    "source": {"type": "string", "maxLength": 1000},
                    "url": {"type": ["string", "null"], "maxLength": 2000},
                },
            },
        },
        "lang": {"type": "string", "enum": ["zh", "en"],
                 "description": "Language of the answer."},
    },
}

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS feedback (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT    NOT NULL,
    rating     TEXT    NOT NULL CHECK (rating IN ('up', 'down')),
    comment    TEXT    NOT NULL DEFAULT '',
    question   TEXT    NOT NULL,
    answer     TEXT    NOT NULL,
    passages   TEXT    NOT NULL DEFAULT '[]',
    lang       TEXT
)
"""


class FeedbackUnavailable(RuntimeError):
    """The store cannot be opened or written (corrupt file, unwritable folder...)."""


class FeedbackInvalid(ValueError):
    """A feedback body that does not match FEEDBACK_REQUEST_SCHEMA."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class FeedbackStore:
    """An append-only SQLite table of feedback records, safe across threads and processes."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._ready = False
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        """A fresh connection; creates the file, the table and WAL mode on first use."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise FeedbackUnavailable(self._why(exc)) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if not self._ready:
                with self._lock:
                    if not self._ready:
                        self._setup(conn)
                        self._ready = True
        except sqlite3.Error as exc:
            conn.close()
            raise FeedbackUnavailable(self._why(exc)) from exc
        return conn

    @staticmethod
    def _setup(conn: sqlite3.Connection) -> None:
        """WAL mode and the table. Switching to WAL takes an exclusive lock and
        SQLite answers "locked" at once, without the busy handler, when another
        process holds one (two writers creating the file together): retry."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(SCHEMA_SQL)
                return
            except sqlite3.OperationalError as exc:
                msg = str(exc).lower()
                if ("locked" not in msg and "busy" not in msg) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _why(self, exc: Exception) -> str:
        return (f"feedback store {self.path} cannot be used ({exc}); move the file aside "
                "or set KBQA_FEEDBACK_DB to a writable path")

    def add(self, record: dict[str, Any]) -> int:
        """Store one validated record; returns its id."""
        row = (datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
               record["rating"], record.get("comment", ""), record["question"],
               record["answer"], json.dumps(record.get("passages", []), ensure_ascii=False),
               record.get("lang"))
        conn = self._connect()
        try:
            cur = conn.execute(
                "INSERT INTO feedback (created_at, rating, comment, question, answer, passages, "
                "lang) VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            return int(cur.lastrowid)
        except sqlite3.Error as exc:
            raise FeedbackUnavailable(self._why(exc)) from exc
        finally:
            conn.close()

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record, oldest first, as plain dicts (passages decoded)."""
        if not self.path.exists():
            return
        conn = self._connect()
        try:
            cur = conn.execute("SELECT id, created_at, rating, comment, question, answer, "
                               "passages, lang FROM feedback ORDER BY id")
            for row in cur:
                yield {"id": row[0], "created_at": row[1], "rating": row[2], "comment": row[3],
                       "question": row[4], "answer": row[5], "passages": json.loads(row[6]),
                       "lang": row[7]}
        except sqlite3.Error as exc:
            raise FeedbackUnavailable(self._why(exc)) from exc
        finally:
            conn.close()

    def count(self) -> int:
        return sum(1 for _ in self.records())


def validate(body: Any) -> dict[str, Any]:
    """Check a request body against FEEDBACK_REQUEST_SCHEMA; one clear message if not."""
    from jsonschema import Draft202012Validator

    if not isinstance(body, dict):
        raise FeedbackInvalid("invalid_body", "request body must be a JSON object")
    errors = sorted(Draft202012Validator(FEEDBACK_REQUEST_SCHEMA).iter_errors(body),
                    key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise FeedbackInvalid("invalid_feedback", _message(errors[0]))
    return body


def _message(err) -> str:
    """A short, value-free message: where the problem is and what is expected."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
    field = where.lstrip(".") or "body"
    schema, kind = err.schema, err.validator
    if kind == "required":
        missing = [n for n in schema.get("required", []) if n not in err.instance]
        prefix = f"{field}." if where else ""
        return f"field {prefix}{missing[0] if missing else '?'} is required"
    if kind == "additionalProperties":
        extra = sorted(set(err.instance) - set(schema.get("properties", {})))
        allowed = ", ".join(schema.get("properties", {}))
        return f"unknown field {extra[0]!r} in {field}; allowed: {allowed}"
    if kind == "enum":
        return f"{field} must be one of {', '.join(map(str, schema['enum']))}"
    if kind == "type":
        expected = schema["type"]
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"{field} must be of type {expected}"
    if kind == "maxLength":
        return f"{field} is longer than {schema['maxLength']} characters"
    if kind == "minLength":
        return f"{field} must not be empty"
    if kind == "maxItems":
        return f"{field} has more than {schema['maxItems']} items"
    return f"{field} is not valid ({kind})"


feedback_api = Blueprint("feedback", __name__, url_prefix="/api")


def _error(status: int, code: str, message: str):
    resp = jsonify({"error": {"code": code, "message": message}})
    resp.status_code = status
    return resp


def store_for(app) -> FeedbackStore:
    """The app's store, created on first use from ``Config.feedback_db``."""
    store = app.extensions.get("kbqa_feedback")
    if store is None:
        store = app.extensions["kbqa_feedback"] = FeedbackStore(app.config["KBQA"].feedback_db)
    return store


@feedback_api.post("/feedback")
def post_feedback():
    """Store 👍/👎 (and an optional comment) with the question, answer and sources."""
    if not request.is_json:
        return _error(415, "unsupported_media_type",
                      "send feedback as JSON with Content-Type: application/json")
    body = request.get_json(silent=True)
    if body is None:
        return _error(400, "invalid_json", "request body is not valid JSON")
    try:
        record = validate(body)
    except FeedbackInvalid as exc:
        return _error(400, exc.code, str(exc))
    try:
        new_id = store_for(current_app).add(record)
    except FeedbackUnavailable as exc:
        current_app.logger.error("%s", exc)
        return _error(503, "feedback_unavailable",
                      "feedback cannot be stored right now; answers still work. "
                      "The operator should check the server log")
    resp = jsonify({"id": new_id})
    resp.status_code = 201
    return resp


def export_jsonl(store: FeedbackStore, out) -> int:
    """Write every record as one JSON line to the text stream ``out``; returns the count."""
    n = 0
    for rec in store.records():
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        n += 1
    return n


__all__ = ["FEEDBACK_REQUEST_SCHEMA", "FeedbackInvalid", "FeedbackStore", "FeedbackUnavailable",
           "export_jsonl", "feedback_api", "store_for", "validate"]
