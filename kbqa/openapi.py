"""The REST contract as an OpenAPI 3.1 document, and a readable page for it.

Why built in Python rather than kept as a JSON file: the limits in it (question
length, ``top_k`` range, the feedback body) come from the same ``Config`` and
schema objects the handlers use, so the document cannot drift from the code.
Tests validate real responses against it (tests/test_openapi.py).

The docs page at ``/api/docs`` is rendered here on the server from the same
dictionary: plain HTML with our own stylesheet, no CDN and no script, so it
works offline and under the app's Content-Security-Policy.
"""

from __future__ import annotations

import copy
import json
from html import escape
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from kbqa.config import Config
from kbqa.feedback import FEEDBACK_REQUEST_SCHEMA

OPENAPI_VERSION = "3.1.0"

openapi_api = Blueprint("openapi", __name__, url_prefix="/api")


def _sse_event_schema(events: dict[str, str]) -> dict:
    """One Server-Sent Event: ``event`` names it, ``data`` is JSON of the named schema."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {"event": {"type": "string", "enum": list(events)},
                       "data": {"type": "string", "contentMediaType": "application/json"}},
        "allOf": [{"if": {"properties": {"event": {"const": name}}, "required": ["event"]},
                   "then": {"properties": {"data": {"contentMediaType": "application/json",
                                                    "contentSchema": _ref(schema)}}}}
                  for name, schema in events.items()],
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str, example: Any = None) -> dict:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"description": description, "content": {"application/json": media}}


def _error_response(description: str, example_code: str) -> dict:
    return _json(_ref("Error"), description,
                 {"error": {"code": example_code, "message": "what was wrong and how to fix it"}})


def _schemas(cfg: Config) -> dict[str, Any]:
    """Component schemas (JSON Schema 2020-12, as OpenAPI 3.1 uses it)."""
    lang = {"type": "string", "enum": ["zh", "en"]}
    return {
        "Error": {
            "type": "object",
            "description": "Every error answer has this shape, whatever the status.",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string",
                             "description": "Machine-readable reason, e.g. `empty_question`."},
                    "message": {"type": "string",
                                "description": "One sentence: what was wrong, how to fix it."},
                },
            }},
        },
        "HistoryTurn": {
            "type": "object",
            "description": "One earlier question and the answer it got.",
            "required": ["question"],
            "properties": {
                "question": {"type": "string", "maxLength": cfg.max_question_chars},
                "answer": {"type": "string", "maxLength": 20 * cfg.max_question_chars,
                           "description": "Optional; its topic words help resolve \"it\"."},
            },
        },
        "QueryRequest": {
            "type": "object",
            "required": ["question"],
            "properties": {
                "question": {"type": "string", "minLength": 1,
                             "maxLength": cfg.max_question_chars,
                             "description": "In Chinese or English; the answer follows its "
                                            "language."},
                "top_k": {"type": "integer", "minimum": 1, "maximum": cfg.max_top_k,
                          "default": cfg.default_top_k,
                          "description": "How many passages to retrieve and return."},
                "history": {"type": "array", "maxItems": getattr(cfg, "max_history_turns", 10),
                            "items": _ref("HistoryTurn"),
                            "description": "Earlier turns, oldest first, so that a follow-up "
                                           "such as \"and how do I install it?\" is searched "
                                           "with its topic."},
            },
        },
        "Passage": {
            "type": "object",
            "description": "A retrieved passage; `[n]` in the answer cites the n-th one.",
            "required": ["id", "source", "collection", "lang", "title", "heading", "text",
                         "score", "url"],
            "properties": {
                "id": {"type": "string", "description": "`collection:source#ordinal`."},
                "source": {"type": "string",
                           "description": "Path of the page inside its collection."},
                "collection": {"type": "string",
                               "description": "Name of the indexed folder."},
                "lang": lang,
                "title": {"type": "string"},
                "heading": {"type": "string",
                            "description": "Heading path inside the page (`A > B`), may be "
                                           "empty."},
                "text": {"type": "string", "description": "The whole passage (Markdown)."},
                "score": {"type": "number", "description": "Fused retrieval score."},
                "url": {"type": ["string", "null"],
                        "description": "Canonical link: kubernetes.io for the official docs, "
                                       "else this server's `/articles/...` page."},
            },
        },
        "Suggestion": {
            "type": "object",
            "required": ["title", "url"],
            "properties": {"title": {"type": "string"}, "url": {"type": "string"}},
        },
        "QueryResponse": {
            "type": "object",
            "required": ["answer", "answer_html", "found", "lang", "question_type",
                         "searched_query", "mode", "mode_note", "passages", "suggestions",
                         "timings", "took_ms"],
            "properties": {
                "answer": {"type": "string",
                           "description": "Markdown with `[n]` citations."},
                "answer_html": {"type": "string",
                                "description": "The answer rendered and sanitised "
                                               "(allow-list): safe to insert as HTML."},
                "found": {"type": "boolean",
                          "description": "false: the knowledge base has nothing on this; "
                                         "see `suggestions`."},
                "lang": lang,
                "question_type": {"type": "string", "enum": ["definition", "procedure",
                                                             "comparison", "list", "general"]},
                "searched_query": {"type": "string",
                                   "description": "The query actually searched: a follow-up "
                                                  "resolved against `history`."},
                "mode": {"type": "string", "enum": ["extractive", "llm"]},
                "mode_note": {"type": ["string", "null"],
                              "description": "Why a configured language model was not used."},
                "passages": {"type": "array", "items": _ref("Passage")},
                "suggestions": {"type": "array", "items": _ref("Suggestion"),
                                "description": "Nearby topics when `found` is false."},
                "timings": {"type": "object", "additionalProperties": {"type": "number"},
                            "description": "Milliseconds per stage."},
                "took_ms": {"type": "number"},
            },
        },
        "StreamMeta": {
            "type": "object",
            "description": "Data of the first `meta` event of /api/query/stream.",
            "required": ["searched_query", "lang", "found", "passages"],
            "properties": {
                "searched_query": {"type": "string"},
                "lang": lang,
                "found": {"type": "boolean"},
                "question_type": {"type": "string", "enum": ["definition", "procedure",
                                                             "comparison", "list", "general"]},
                "passages": {"type": "array", "items": _ref("Passage")},
                "suggestions": {"type": "array", "items": _ref("Suggestion")},
                "mode": {"type": "string", "enum": ["extractive", "llm"]},
            },
        },
        "StreamDelta": {
            "type": "object",
            "description": "Data of a `delta` event: the next piece of the Markdown answer.",
            "required": ["text"],
            "properties": {"text": {"type": "string"}},
        },
        "Health": {
            "type": "object",
            "required": ["status", "documents", "chunks", "models", "built_at", "version"],
            "properties": {
                "status": {"type": "string", "const": "ok"},
                "documents": {"type": "integer", "minimum": 0},
                "chunks": {"type": "integer", "minimum": 0},
                "models": {"type": "array", "items": {"type": "string"},
                           "description": "Dense encoders stored in the index."},
                "built_at": {"type": "string", "description": "When the index was built."},
                "version": {"type": "string", "description": "Folder of the serving index."},
                "kbqa_version": {"type": "string"},
            },
        },
        "Article": {
            "type": "object",
            "required": ["title", "lang", "markdown", "html"],
            "properties": {
                "title": {"type": "string"},
                "lang": lang,
                "markdown": {"type": "string", "description": "The cleaned page body."},
                "html": {"type": "string", "description": "Sanitised HTML of the body; "
                                                          "headings carry the passages' "
                                                          "anchors."},
            },
        },
        "FeedbackRequest": copy.deepcopy(FEEDBACK_REQUEST_SCHEMA),
        "FeedbackCreated": {
            "type": "object",
            "required": ["id"],
            "properties": {"id": {"type": "integer", "minimum": 1}},
        },
        "AdminStatus": {
            "type": "object",
            "description": "The serving index version and the last or running re-index.",
            "required": ["state", "running", "serving"],
            "properties": {
                "state": {"type": "string", "enum": ["idle", "running", "done", "failed"]},
                "running": {"type": "boolean"},
                "full": {"type": "boolean", "description": "Whether the last re-index "
                                                           "rebuilt everything."},
                "started_at": {"type": ["string", "null"]},
                "finished_at": {"type": ["string", "null"]},
                "progress": {"type": ["object", "null"],
                             "description": "The running stage: `stage`, `done`, `total`, "
                                            "`unit`.",
                             "properties": {"stage": {"type": "string"},
                                            "done": {"type": "integer"},
                                            "total": {"type": "integer"},
                                            "unit": {"type": "string"}}},
                "notes": {"type": "array", "items": {"type": "string"}},
                "last_result": {"type": ["object", "null"], "additionalProperties": True,
                                "description": "The last successful build's report."},
                "last_error": {"type": ["string", "null"]},
                "serving": {"type": ["string", "null"],
                            "description": "Index version answering now."},
            },
        },
        "ReindexRequest": {
            "type": "object",
            "properties": {"full": {"type": "boolean", "default": False,
                                    "description": "Rebuild everything instead of reusing "
                                                   "unchanged files' embeddings."}},
        },
        "ReindexAccepted": {
            "type": "object",
            "description": "A re-index was started in the background.",
            "required": ["status", "full", "sources", "status_url"],
            "properties": {
                "status": {"type": "string", "const": "started"},
                "full": {"type": "boolean"},
                "sources": {"type": "array", "items": {"type": "string"}},
                "status_url": {"type": "string"},
            },
        },
    }


def _query_body(cfg: Config) -> dict:
    return {"required": True, "content": {"application/json": {
        "schema": _ref("QueryRequest"),
        "examples": {
            "zh": {"summary": "A Chinese question",
                   "value": {"question": "etcd 的作用是什么？", "top_k": 5}},
            "en": {"summary": "An English question",
                   "value": {"question": "What does kube-proxy do?"}},
            "follow-up": {"summary": "A follow-up with history",
                          "value": {"question": "How do I install it?",
                                    "history": [{"question": "What is kubeadm?",
                                                 "answer": "kubeadm is a tool ... [1]"}]}},
        },
    }}}


def _bad_input() -> dict[str, dict]:
    limited = _error_response("Too many questions from this address (per-address rate "
                              "limit, `KBQA_RATE_LIMIT`; loopback is exempt by default).",
                              "rate_limited")
    limited["headers"] = {"Retry-After": {
        "description": "Seconds to wait before asking again.",
        "schema": {"type": "integer", "minimum": 0}}}
    return {
        "400": _error_response("Invalid body: not JSON, missing or empty question, bad "
                               "`top_k` or `history`.", "empty_question"),
        "413": _error_response("The question or the body is too long.", "question_too_long"),
        "415": _error_response("The body is not sent as application/json.",
                               "unsupported_media_type"),
        "429": limited,
    }


def build_document(cfg: Config) -> dict[str, Any]:
    """The whole OpenAPI document for an app running with ``cfg``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        kbqa_version = version("kbqa")
    except PackageNotFoundError:  # running from a source tree that was never installed
        kbqa_version = "0.0.0"
    no_index = _error_response("No index is built yet, or it cannot be read.", "no_index")
    body_kib = getattr(cfg, "max_body_bytes", 64 * 1024) // 1024
    bearer = [{"bearerAuth": []}]
    unauthorized = _error_response("Missing or wrong bearer token (header "
                                   "`WWW-Authenticate: Bearer`).", "unauthorized")
    source_param = [
        {"name": "collection", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "The passage's `collection`."},
        {"name": "source", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "The passage's `source`; may contain `/` (e.g. `en/etcd.md`)."},
    ]
    doc = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "kbqa API",
            "version": kbqa_version,
            "summary": "Bilingual (中文 + English) Kubernetes questions answered with cited "
                       "sources.",
            "description": (
                "All endpoints answer JSON unless noted. Errors always have the shape "
                "`{\"error\": {\"code\", \"message\"}}`. Bodies larger than "
                f"{body_kib} KiB are refused with 413."),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/", "description": "This server"}],
        "tags": [
            {"name": "query", "description": "Ask questions."},
            {"name": "index", "description": "What is indexed, and the pages behind it."},
            {"name": "feedback", "description": "Readers' ratings of answers."},
            {"name": "admin", "description": "Operator endpoints, behind a bearer token."},
            {"name": "meta", "description": "This document and the pages of the site."},
        ],
        "paths": {
            "/api/query": {"post": {
                "tags": ["query"], "operationId": "query",
                "summary": "Answer a question with cited passages",
                "description": "The answer is extractive (sentences of the passages, each "
                               "followed by `[n]`), unless a language model is configured.",
                "requestBody": _query_body(cfg),
                "responses": {"200": _json(_ref("QueryResponse"), "The answer."),
                              **_bad_input(), "503": no_index},
            }},
            "/api/query/stream": {"post": {
                "tags": ["query"], "operationId": "queryStream",
                "summary": "Answer a question as Server-Sent Events",
                "description": (
                    "Same body as `/api/query`. The answer arrives as `text/event-stream` "
                    "events: one `meta` (data: `StreamMeta`), zero or more `delta` (data: "
                    "`StreamDelta`, pieces of the Markdown answer), then `done` (data: the "
                    "full `QueryResponse`) or `error` (data: `Error`). Bad input is "
                    "answered with a JSON error before any stream starts."),
                "requestBody": _query_body(cfg),
                "responses": {
                    "200": {"description": "The event stream.", "content": {
                        "text/event-stream": {
                            # Each event as an object: its name and its JSON data.
                            "schema": _sse_event_schema({"meta": "StreamMeta",
                                                         "delta": "StreamDelta",
                                                         "done": "QueryResponse",
                                                         "error": "Error"}),
                            "x-events": {"meta": _ref("StreamMeta"),
                                         "delta": _ref("StreamDelta"),
                                         "done": _ref("QueryResponse"),
                                         "error": _ref("Error")},
                            "example": "event: meta\ndata: {\"found\": true, ...}\n\n"
                                       "event: delta\ndata: {\"text\": \"etcd is ...\"}\n\n"
                                       "event: done\ndata: {\"answer\": ...}\n\n"}}},
                    **_bad_input(), "503": no_index},
            }},
            "/api/health": {"get": {
                "tags": ["index"], "operationId": "health",
                "summary": "Index statistics; 200 means the server can answer",
                "responses": {"200": _json(_ref("Health"), "The serving index."),
                              "503": no_index},
            }},
            "/api/articles/{collection}/{source}": {"get": {
                "tags": ["index"], "operationId": "article",
                "summary": "A whole indexed page, as Markdown and sanitised HTML",
                "parameters": source_param,
                "responses": {"200": _json(_ref("Article"), "The page."),
                              "404": _error_response("No such page in the index.",
                                                     "not_found")},
            }},
            "/api/feedback": {"post": {
                "tags": ["feedback"], "operationId": "feedback",
                "summary": "Rate an answer 👍 / 👎, with an optional comment",
                "description": "Stored with the question, the answer and its sources in "
                               "SQLite; `kbqa feedback export` writes them as JSONL. Unknown "
                               "fields are refused.",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("FeedbackRequest"),
                    "example": {"rating": "up", "comment": "clear and cited",
                                "question": "etcd 的作用是什么？",
                                "answer": "etcd 是 Kubernetes 的键值存储 [1]。",
                                "passages": [{"id": "corpus:zh/etcd.md#0",
                                              "source": "zh/etcd.md",
                                              "url": "/articles/corpus/zh/etcd.md"}],
                                "lang": "zh"}}}},
                "responses": {
                    "201": _json(_ref("FeedbackCreated"), "Stored."),
                    "400": _error_response("Invalid body (the message names the field).",
                                           "invalid_feedback"),
                    "413": _error_response(f"Body larger than {body_kib} KiB.",
                                           "payload_too_large"),
                    "415": _error_response("Not sent as application/json.",
                                           "unsupported_media_type"),
                    "503": _error_response("The feedback store cannot be written; answers "
                                           "still work.", "feedback_unavailable"),
                },
            }},
            "/api/admin/status": {"get": {
                "tags": ["admin"], "operationId": "adminStatus", "security": bearer,
                "summary": "Serving index and re-index state",
                "responses": {"200": _json(_ref("AdminStatus"), "The state."),
                              "401": unauthorized,
                              "403": _error_response("The admin API is disabled (no "
                                                     "KBQA_ADMIN_TOKEN).", "admin_disabled")},
            }},
            "/api/admin/reindex": {"post": {
                "tags": ["admin"], "operationId": "adminReindex", "security": bearer,
                "summary": "Re-index the sources in the background; the old index serves "
                           "until the new one is ready",
                "requestBody": {"required": False, "content": {"application/json": {
                    "schema": _ref("ReindexRequest"), "example": {"full": False}}}},
                "responses": {"202": _json(_ref("ReindexAccepted"), "Re-index started."),
                              "400": _error_response("The body is not a JSON object, or "
                                                     "`full` is not a boolean.",
                                                     "invalid_full"),
                              "401": unauthorized,
                              "403": _error_response("The admin API is disabled (no "
                                                     "KBQA_ADMIN_TOKEN).", "admin_disabled"),
                              "409": _error_response("A re-index is already running, or a "
                                                     "source folder is missing.",
                                                     "reindex_running")},
            }},
            "/api/openapi.json": {"get": {
                "tags": ["meta"], "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1 document.",
                                      "content": {"application/json": {
                                          "schema": {"type": "object"}}}}},
            }},
            "/api/docs": {"get": {
                "tags": ["meta"], "operationId": "docs",
                "summary": "This document as a readable page",
                "responses": {"200": {"description": "HTML page.",
                                      "content": {"text/html": {
                                          "schema": {"type": "string"}}}}},
            }},
            "/": {"get": {
                "tags": ["meta"], "operationId": "chatPage",
                "summary": "The chat page (works offline, no CDN)",
                "responses": {"200": {"description": "HTML page.",
                                      "content": {"text/html": {
                                          "schema": {"type": "string"}}}}},
            }},
            "/articles/{collection}/{source}": {"get": {
                "tags": ["meta"], "operationId": "articlePage",
                "summary": "A cited page of the corpus, as HTML",
                "parameters": source_param,
                "responses": {"200": {"description": "HTML page.",
                                      "content": {"text/html": {
                                          "schema": {"type": "string"}}}},
                              "404": _error_response("No such page in the index.",
                                                     "not_found")},
            }},
        },
        "components": {
            "schemas": _schemas(cfg),
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "The admin token the server was started with."}},
        },
    }
    if getattr(cfg, "metrics_enabled", True):
        doc["paths"]["/metrics"] = {"get": {
            "tags": ["meta"], "operationId": "metrics",
            "summary": "Prometheus metrics (text exposition format 0.0.4)",
            "description": (
                "Requests and latency by endpoint and status (`kbqa_http_requests_total`, "
                "`kbqa_http_request_duration_seconds`), answers found or not "
                "(`kbqa_answers_total`), rate-limited requests (`kbqa_rate_limited_total`), "
                "admin re-indexes (`kbqa_reindex_total{result}`, "
                "`kbqa_reindex_last_completion_timestamp_seconds`, ...) and the served "
                "index (`kbqa_index_info{version}`, `kbqa_index_chunks`, "
                "`kbqa_index_documents`, `kbqa_index_vectors`, `kbqa_index_size_bytes`). "
                "Under `kbqa serve` the figures are the sum over all worker processes. "
                "Not rate limited; `KBQA_METRICS_ENABLED=false` turns it off (404)."),
            "responses": {"200": {"description": "Metrics in the Prometheus text format.",
                                  "content": {"text/plain": {
                                      "schema": {"type": "string"},
                                      "example": "kbqa_http_requests_total{endpoint=\"api.query\","
                                                 "status=\"200\"} 42.0\n"}}}},
        }}
    return doc


def document_for(app) -> dict[str, Any]:
    """The app's document, built once (it depends only on the app's Config)."""
    doc = app.extensions.get("kbqa_openapi")
    if doc is None:
        doc = app.extensions["kbqa_openapi"] = build_document(app.config["KBQA"])
    return doc


@openapi_api.get("/openapi.json")
def openapi_json():
    return jsonify(document_for(current_app))


@openapi_api.get("/docs")
def docs_page():
    return Response(render_docs(document_for(current_app)), mimetype="text/html")


# --- the readable page -------------------------------------------------------

def _resolve(doc: dict, schema: dict) -> tuple[str | None, dict]:
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return name, doc["components"]["schemas"][name]
    return None, schema


def _type_of(doc: dict, schema: dict) -> str:
    name, s = _resolve(doc, schema)
    if name:
        return name
    t = s.get("type", "any")
    if isinstance(t, list):
        t = " | ".join(t)
    if t == "array":
        return f"array of {_type_of(doc, s.get('items', {}))}"
    if t == "object" and isinstance(s.get("additionalProperties"), dict):
        return f"object of {_type_of(doc, s['additionalProperties'])}"
    return t


def _constraints(s: dict) -> str:
    parts = []
    for key, label in (("minLength", "min length"), ("maxLength", "max length"),
                       ("minimum", "min"), ("maximum", "max"), ("maxItems", "max items"),
                       ("default", "default")):
        if key in s:
            parts.append(f"{label} {s[key]}")
    if "enum" in s:
        parts.append("one of " + ", ".join(f"`{v}`" for v in s["enum"]))
    if "const" in s:
        parts.append(f"always `{s['const']}`")
    return "; ".join(parts)


def _md_inline(text: str) -> str:
    """`code` spans in descriptions; everything else escaped."""
    out = []
    for i, part in enumerate(escape(text).split("`")):
        out.append(f"<code>{part}</code>" if i % 2 else part)
    return "".join(out)


def _fields_table(doc: dict, schema: dict) -> str:
    _, s = _resolve(doc, schema)
    props = s.get("properties") or {}
    if not props:
        return ""
    required = set(s.get("required", []))
    rows = []
    for name, sub in props.items():
        _, subs = _resolve(doc, sub)
        desc = sub.get("description") or subs.get("description") or ""
        cons = _constraints(subs)
        text = _md_inline(desc) + (("<br>" if desc else "") + _md_inline(cons) if cons else "")
        rows.append(f"<tr><td><code>{escape(name)}</code>"
                    f"{' <span class=req>required</span>' if name in required else ''}</td>"
                    f"<td>{escape(_type_of(doc, sub))}</td><td>{text}</td></tr>")
    return ("<table class=fields><thead><tr><th>field</th><th>type</th><th>notes</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>")


def _schema_block(doc: dict, schema: dict) -> str:
    name, _ = _resolve(doc, schema)
    head = (f'<p class=schema-name>Schema <a href="#schema-{escape(name)}">'
            f"<code>{escape(name)}</code></a></p>" if name else "")
    return head + _fields_table(doc, schema)


def render_docs(doc: dict) -> str:
    """The document as one HTML page: operations, then schemas; no script."""
    info = doc["info"]
    ops = []
    toc = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            anchor = f"op-{op['operationId']}"
            toc.append(f'<li><a href="#{anchor}"><span class="method m-{method}">'
                       f"{method.upper()}</span> <code>{escape(path)}</code></a> "
                       f"<span class=muted>{_md_inline(op.get('summary', ''))}</span></li>")
            parts = [f'<section class=op id="{anchor}"><h3><span class="method m-{method}">'
                     f"{method.upper()}</span> <code>{escape(path)}</code></h3>",
                     f"<p class=op-summary>{_md_inline(op.get('summary', ''))}</p>"]
            if op.get("description"):
                parts.append(f"<p>{_md_inline(op['description'])}</p>")
            if op.get("security"):
                parts.append("<p class=auth>Needs <code>Authorization: Bearer TOKEN</code>."
                             "</p>")
            if op.get("parameters"):
                rows = "".join(
                    f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
                    f"<td>{_md_inline(p.get('description', ''))}</td></tr>"
                    for p in op["parameters"])
                parts.append("<h4>Parameters</h4><table class=fields><thead><tr><th>name</th>"
                             f"<th>in</th><th>notes</th></tr></thead><tbody>{rows}</tbody>"
                             "</table>")
            body = op.get("requestBody")
            if body:
                media_type, media = next(iter(body["content"].items()))
                parts.append(f"<h4>Request body <small>{escape(media_type)}</small></h4>")
                parts.append(_schema_block(doc, media["schema"]))
                examples = media.get("examples") or (
                    {"example": {"value": media["example"]}} if "example" in media else {})
                for ex in examples.values():
                    label = ex.get("summary", "Example")
                    parts.append(f"<p class=ex-label>{escape(label)}</p><pre><code>"
                                 f"{escape(json.dumps(ex['value'], ensure_ascii=False, indent=2))}"
                                 "</code></pre>")
            parts.append("<h4>Responses</h4><dl class=responses>")
            for status, resp in op["responses"].items():
                parts.append(f"<dt><span class='http-status s{status[0]}xx'>{escape(status)}</span> "
                             f"{_md_inline(resp.get('description', ''))}</dt><dd>")
                for media_type, media in (resp.get("content") or {}).items():
                    parts.append(f"<p class=media>{escape(media_type)}</p>")
                    if "x-events" in media:
                        items = "".join(f"<li><code>{escape(ev)}</code>: "
                                        f"<a href='#schema-{escape(_resolve(doc, s)[0] or '')}'>"
                                        f"{escape(_resolve(doc, s)[0] or '')}</a></li>"
                                        for ev, s in media["x-events"].items())
                        parts.append(f"<ul class=events>{items}</ul>")
                    elif media["schema"].get("$ref"):
                        name = _resolve(doc, media["schema"])[0]
                        parts.append(f"<p class=schema-name>Schema <a href='#schema-{name}'>"
                                     f"<code>{escape(name)}</code></a></p>")
                parts.append("</dd>")
            parts.append("</dl></section>")
            ops.append("".join(parts))
    schemas = []
    for name, schema in doc["components"]["schemas"].items():
        desc = schema.get("description", "")
        schemas.append(f"<section class=schema id='schema-{escape(name)}'><h3><code>"
                       f"{escape(name)}</code></h3>"
                       + (f"<p>{_md_inline(desc)}</p>" if desc else "")
                       + (_fields_table(doc, schema)
                          or f"<p class=muted>{escape(_type_of(doc, schema))}</p>")
                       + "</section>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(info['title'])} {escape(info['version'])} · reference</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/app.css"></head>'
        '<body class="doc-page"><main class="doc-body">'
        '<p class=doc-nav><a href="/">← kbqa</a> · <a href="/api/openapi.json">openapi.json'
        "</a></p>"
        f"<h1>{escape(info['title'])} <small>{escape(info['version'])}</small></h1>"
        f"<p class=lead>{_md_inline(info.get('summary', ''))}</p>"
        f"<p>{_md_inline(info.get('description', ''))}</p>"
        f"<nav aria-label='Endpoints'><h2>Endpoints</h2><ul class=toc>{''.join(toc)}</ul></nav>"
        f"<h2>Operations</h2>{''.join(ops)}"
        f"<h2>Schemas</h2>{''.join(schemas)}"
        "</main></body></html>")


__all__ = ["build_document", "document_for", "openapi_api", "render_docs"]
