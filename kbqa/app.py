"""Flask application factory: the REST API and the chat page over one KnowledgeBase."""

from __future__ import annotations

import json
from pathlib import Path

from flask import (Blueprint, Flask, Response, abort, current_app, jsonify, request,
                   send_from_directory, stream_with_context)
from werkzeug.exceptions import HTTPException

from kbqa import metrics
from kbqa.admin import admin
from kbqa.config import Config
from kbqa.index import IndexError_
from kbqa.kb import KnowledgeBase, QueryError

api = Blueprint("api", __name__, url_prefix="/api")
pages = Blueprint("pages", __name__)

def _kb() -> KnowledgeBase:
    return current_app.extensions["kbqa"]


def error(status: int, code: str, message: str):
    resp = jsonify({"error": {"code": code, "message": message}})
    resp.status_code = status
    return resp


def _query_body() -> tuple[dict | None, object]:
    """The JSON body of a query, or the error response to send instead."""
    if not request.is_json:
        return None, error(415, "unsupported_media_type", "send the question as JSON with "
                           "Content-Type: application/json")
    body = request.get_json(silent=True)
    if body is None:
        return None, error(400, "invalid_json", "request body is not valid JSON")
    if not isinstance(body, dict):
        return None, error(400, "invalid_body", "request body must be a JSON object")
    if "question" not in body:
        return None, error(400, "missing_question", "field 'question' is required")
    return body, None


def _query_error(exc: QueryError):
    status = 413 if exc.code == "question_too_long" else 400
    return error(status, exc.code, str(exc))


@api.post("/query")
def query():
    body, failure = _query_body()
    if failure is not None:
        return failure
    try:
        answer = _kb().ask(body["question"], body.get("top_k"), history=body.get("history"))
    except QueryError as exc:
        return _query_error(exc)
    metrics.answered(answer)
    return jsonify(answer)


@api.post("/query/stream")
def query_stream():
    """The same answer as Server-Sent Events: meta, then delta..., then done.

    Bad input is refused with a JSON 4xx before the stream starts; a language
    model failing mid-stream ends with ``done`` carrying the extractive answer.
    """
    body, failure = _query_body()
    if failure is not None:
        return failure
    try:
        events = _kb().ask_stream(body["question"], body.get("top_k"),
                                  history=body.get("history"))
    except QueryError as exc:
        return _query_error(exc)

    def generate():
        for event, data in events:
            if event == "done":
                metrics.answered(data)
            yield f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    return Response(stream_with_context(generate()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@api.get("/health")
def health():
    try:
        return jsonify({"status": "ok", **_kb().stats()})
    except IndexError_ as exc:
        return error(503, "no_index", str(exc))


@api.get("/articles/<collection>/<path:source>")
def article_json(collection: str, source: str):
    art = _kb().article(collection, source)
    if art is None:
        return error(404, "not_found", "no such article in the index")
    return jsonify(art)


@pages.get("/")
def index_page():
    return send_from_directory(current_app.config["KBQA"].web_dir, "index.html")


@pages.get("/static/<path:name>")
def static_file(name: str):
    # send_from_directory refuses paths that leave web_dir.
    return send_from_directory(current_app.config["KBQA"].web_dir, name)


@pages.get("/articles/<collection>/<path:source>")
def article_page(collection: str, source: str):
    art = _kb().article(collection, source)
    if art is None:
        abort(404)
    from html import escape

    lang = "zh-CN" if art["lang"] == "zh" else "en"
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(art["title"])} · kbqa</title>'
            f'<link rel="stylesheet" href="/static/app.css"></head>'
            f'<body class="article"><main class="article-body"><p><a href="/">← kbqa</a></p>'
            f'<h1>{escape(art["title"])}</h1>{art["html"]}</main></body></html>')


def _limit_queries(app: Flask, config: Config) -> None:
    """Per-address rate limit on the endpoints that cost CPU (429 with Retry-After).

    Counted in each worker process (no shared store offline): with N workers an
    address gets up to N times the limit. ``KBQA_RATE_LIMIT=off`` disables it.
    """
    if config.rate_limit.strip().lower() in ("", "off", "none", "0"):
        return
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    exempt = {a.strip() for a in config.rate_limit_exempt.split(",") if a.strip()}
    limiter = Limiter(get_remote_address, app=app, storage_uri="memory://",
                      headers_enabled=True, default_limits=[])
    limit = limiter.shared_limit(config.rate_limit, scope="queries",
                                 exempt_when=lambda: request.remote_addr in exempt)
    for endpoint in ("api.query", "api.query_stream"):
        app.view_functions[endpoint] = limit(app.view_functions[endpoint])


def create_app(config: Config | None = None, kb: KnowledgeBase | None = None) -> Flask:
    config = config or Config.from_env()
    app = Flask(__name__, static_folder=None)
    if config.trusted_proxies > 0:
        # Behind a reverse proxy the client address is in X-Forwarded-For.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.trusted_proxies)
    app.config["KBQA"] = config
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.ensure_ascii = False
    app.extensions["kbqa"] = kb or KnowledgeBase(config)
    # First: its timer starts before any other before_request function runs.
    metrics.init_app(app)
    app.register_blueprint(api)
    app.register_blueprint(pages)
    # Admin API (off without KBQA_ADMIN_TOKEN); also pins one index version per request.
    app.register_blueprint(admin)
    # Feedback opens its SQLite store lazily: a broken store never stops answers.
    from kbqa.feedback import feedback_api
    from kbqa.openapi import openapi_api

    app.register_blueprint(feedback_api)
    app.register_blueprint(openapi_api)
    _limit_queries(app, config)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                 400: "bad_request", 415: "unsupported_media_type"}
        message = {404: "no such endpoint or file", 405: f"method {request.method} is not "
                   "allowed here", 413: f"request body is larger than {config.max_body_bytes} bytes",
                   429: "too many requests from your address; wait and retry (see Retry-After)"}
        codes[429] = "rate_limited"
        return error(exc.code or 500, codes.get(exc.code, "http_error"),
                     message.get(exc.code, exc.description or exc.name))

    @app.errorhandler(IndexError_)
    def no_index(exc: IndexError_):
        return error(503, "no_index", str(exc))

    @app.errorhandler(Exception)
    def crash(exc: Exception):
        app.logger.exception("unhandled error")
        return error(500, "internal_error", "the server failed to answer; see its log")

    cors = {o.strip() for o in config.cors_origins.split(",") if o.strip()}

    @app.after_request
    def headers(resp):
        # CORS is off unless origins are configured: the page is same-origin.
        origin = request.headers.get("Origin")
        if cors and origin and request.path.startswith("/api/") and ("*" in cors or origin in cors):
            resp.headers["Access-Control-Allow-Origin"] = "*" if "*" in cors else origin
            resp.headers["Access-Control-Allow-Headers"] = "Content-Type"
            resp.headers["Vary"] = "Origin"
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
        return resp

    return app
