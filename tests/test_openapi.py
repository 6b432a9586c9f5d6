"""The OpenAPI document: valid itself, complete, and true of real responses.

Real responses (Flask test client and a running `kbqa serve`) are validated
against the document's response schemas with jsonschema, in a strict reading:
every object with listed properties may carry no other field, so a field the
server adds without documenting it fails here.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import requests
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec

from conftest import make_config
from kbqa.app import create_app

DOC_CACHE: dict = {}


@pytest.fixture(scope="module")
def app(kb, tmp_path_factory):
    cfg = make_config(index_dir=kb.config.index_dir, admin_token="s3cret-token",
                      feedback_db=tmp_path_factory.mktemp("openapi-fb") / "fb.sqlite3")
    return create_app(cfg, kb=kb)


@pytest.fixture(scope="module")
def c(app):
    return app.test_client()


@pytest.fixture(scope="module")
def doc(c):
    r = c.get("/api/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    return r.get_json()


def strict(schema):
    """Forbid undocumented fields wherever an object lists its properties."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def response_schema(doc: dict, path: str, method: str, status: int, media: str) -> dict:
    op = doc["paths"][path][method]
    assert str(status) in op["responses"], f"{method.upper()} {path} -> {status} is undocumented"
    content = op["responses"][str(status)].get("content", {})
    assert media in content, f"{method.upper()} {path} -> {status} {media} is undocumented"
    return content[media]["schema"]


def check_json(doc: dict, path: str, method: str, status: int, body, schema=None) -> None:
    """Validate one JSON body against the documented schema (strict)."""
    schema = schema or response_schema(doc, path, method, status, "application/json")
    root = {**strict(copy.deepcopy(schema)), "components": strict(doc["components"])}
    errors = list(Draft202012Validator(root).iter_errors(body))
    assert not errors, (f"{method.upper()} {path} -> {status}: "
                        + "; ".join(f"{list(e.absolute_path)}: {e.message[:200]}"
                                    for e in errors[:5]))


def check(doc: dict, path: str, method: str, resp, status: int) -> dict:
    """A Flask test-client response: expected status, JSON, valid against the document."""
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    check_json(doc, path, method, status, body)
    return body


def sse_events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in re.split(r"\r?\n\r?\n", text.strip()):
        event, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            out.append((event, json.loads("\n".join(data))))
    return out


# --- the document itself -----------------------------------------------------

def test_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"].startswith("3.1")
    validate_spec(doc)  # raises with the path of the first problem
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)


def test_document_describes_every_route_of_the_app(app, doc):
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "pages.static_file"):
            continue  # files of web/, not an API
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    documented = {(p, m) for p, item in doc["paths"].items() for m in item}
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "document lists routes the app does not have"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op.get("summary") and op.get("responses"), (path, method)
            if method == "post":
                assert "requestBody" in op, (path, method)


def test_limits_in_document_follow_the_config(kb, tmp_path):
    cfg = make_config(index_dir=kb.config.index_dir, max_question_chars=500, max_top_k=20,
                      feedback_db=tmp_path / "fb.sqlite3")
    doc = create_app(cfg, kb=kb).test_client().get("/api/openapi.json").get_json()
    q = doc["components"]["schemas"]["QueryRequest"]["properties"]
    assert q["question"]["maxLength"] == 500 and q["top_k"]["maximum"] == 20


# --- real responses against it ---------------------------------------------------------

@pytest.mark.parametrize("question", ["etcd 的作用是什么？", "What does kube-proxy do?",
                                      "What is the best pizza recipe?"])
def test_query_responses_match(c, doc, question):
    body = check(doc, "/api/query", "post", c.post("/api/query", json={"question": question}),
                 200)
    assert body["lang"] == ("zh" if "etcd" in question else "en")
    if "pizza" in question:
        assert body["found"] is False and body["passages"] == []
    else:
        assert body["found"] is True and body["passages"]


def test_follow_up_query_with_history_matches(c, doc):
    r = c.post("/api/query", json={"question": "How do I install it?", "history": [
        {"question": "What is kubeadm?", "answer": "kubeadm bootstraps clusters [1]."}]})
    body = check(doc, "/api/query", "post", r, 200)
    assert "kubeadm" in body["searched_query"].lower()


@pytest.mark.parametrize("kwargs, status, code", [
    ({"json": {"question": ""}}, 400, "empty_question"),
    ({"json": {}}, 400, "missing_question"),
    ({"json": {"question": "etcd?", "top_k": 0}}, 400, "invalid_top_k"),
    ({"json": {"question": "etcd?", "history": "nope"}}, 400, "invalid_history"),
    ({"json": {"question": "x" * 2001}}, 413, "question_too_long"),
    ({"data": "question=etcd"}, 415, "unsupported_media_type"),
    ({"data": "{oops", "content_type": "application/json"}, 400, "invalid_json"),
])
@pytest.mark.parametrize("path", ["/api/query", "/api/query/stream"])
def test_query_errors_match(c, doc, path, kwargs, status, code):
    body = check(doc, path, "post", c.post(path, **kwargs), status)
    assert body["error"]["code"] == code and body["error"]["message"]


def test_rate_limited_answer_matches(kb, doc, tmp_path):
    cfg = make_config(index_dir=kb.config.index_dir, rate_limit="2/minute",
                      rate_limit_exempt="", feedback_db=tmp_path / "fb.sqlite3")
    c = create_app(cfg, kb=kb).test_client()
    for _ in range(2):
        assert c.post("/api/query", json={"question": "What is a Pod?"}).status_code == 200
    r = c.post("/api/query/stream", json={"question": "What is a Pod?"})
    body = check(doc, "/api/query/stream", "post", r, 429)
    assert body["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 0
    assert "Retry-After" in doc["paths"]["/api/query"]["post"]["responses"]["429"]["headers"]


def test_stream_events_match(c, doc):
    r = c.post("/api/query/stream", json={"question": "etcd 的作用是什么？"})
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    media = doc["paths"]["/api/query/stream"]["post"]["responses"]["200"]["content"]
    events = media["text/event-stream"]["x-events"]
    got = sse_events(r.get_data(as_text=True))
    names = [e for e, _ in got]
    assert names[0] == "meta" and names[-1] == "done" and set(names[1:-1]) <= {"delta"}
    for name, data in got:
        check_json(doc, "/api/query/stream", "post", 200, data, schema=events[name])
    done = got[-1][1]
    assert "".join(d["text"] for e, d in got if e == "delta") == done["answer"]
    assert got[0][1]["passages"] == done["passages"]


def test_health_article_and_meta_endpoints_match(c, doc):
    check(doc, "/api/health", "get", c.get("/api/health"), 200)
    body = check(doc, "/api/articles/{collection}/{source}", "get",
                 c.get("/api/articles/corpus/en/etcd.md"), 200)
    assert body["lang"] == "en" and "etcd" in body["markdown"]
    check(doc, "/api/articles/{collection}/{source}", "get",
          c.get("/api/articles/corpus/en/nope.md"), 404)
    r = c.get("/api/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert "text/html" in doc["paths"]["/api/docs"]["get"]["responses"]["200"]["content"]
    r = c.get("/articles/corpus/zh/etcd.md")
    assert r.status_code == 200 and r.mimetype == "text/html"


def test_feedback_responses_match(c, doc):
    good = {"rating": "up", "question": "etcd 的作用是什么？", "answer": "etcd 存储 [1]。",
            "passages": [{"id": "corpus:zh/etcd.md#0", "source": "zh/etcd.md", "url": None}]}
    body = check(doc, "/api/feedback", "post", c.post("/api/feedback", json=good), 201)
    assert body["id"] >= 1
    check(doc, "/api/feedback", "post", c.post("/api/feedback", json={**good, "rating": 1}), 400)
    check(doc, "/api/feedback", "post", c.post("/api/feedback", data="x"), 415)
    # The request schema in the document is the one the server enforces.
    req = {"$ref": "#/components/schemas/FeedbackRequest",
           "components": doc["components"]}
    assert Draft202012Validator(req).is_valid(good)
    assert not Draft202012Validator(req).is_valid({**good, "extra": 1})


def test_feedback_503_matches(kb, doc, tmp_path):
    db = tmp_path / "fb.sqlite3"
    db.write_bytes(b"garbage" * 1000)
    cfg = make_config(index_dir=kb.config.index_dir, feedback_db=db)
    r = create_app(cfg, kb=kb).test_client().post(
        "/api/feedback", json={"rating": "up", "question": "q", "answer": "a"})
    check(doc, "/api/feedback", "post", r, 503)


def test_admin_responses_match(c, doc):
    check(doc, "/api/admin/status", "get", c.get("/api/admin/status"), 401)
    check(doc, "/api/admin/reindex", "post", c.post("/api/admin/reindex"), 401)
    auth = {"Authorization": "Bearer s3cret-token"}
    body = check(doc, "/api/admin/status", "get", c.get("/api/admin/status", headers=auth), 200)
    assert body["running"] is False
    check(doc, "/api/admin/reindex", "post",
          c.post("/api/admin/reindex", json={"full": "yes"}, headers=auth), 400)


def test_admin_disabled_matches(kb, doc, tmp_path):
    cfg = make_config(index_dir=kb.config.index_dir, feedback_db=tmp_path / "fb.sqlite3")
    r = create_app(cfg, kb=kb).test_client().get("/api/admin/status",
                                                 headers={"Authorization": "Bearer x"})
    check(doc, "/api/admin/status", "get", r, 403)


def test_unknown_endpoint_and_method_answer_the_error_shape(c, doc):
    for r, status in ((c.get("/api/nope"), 404), (c.get("/api/query"), 405)):
        assert r.status_code == status
        check_json(doc, "/api/query", "post", 400, r.get_json())  # the shared Error schema


def test_real_server_responses_match(server, doc):
    """The same contract over real HTTP from `kbqa serve`."""
    r = requests.get(server + "/api/openapi.json", timeout=30)
    assert r.status_code == 200 and r.json()["paths"].keys() == doc["paths"].keys()
    r = requests.get(server + "/api/health", timeout=30)
    check_json(doc, "/api/health", "get", r.status_code, r.json())
    r = requests.post(server + "/api/query", json={"question": "kubelet 做什么？", "top_k": 3},
                      timeout=60)
    assert r.status_code == 200 and len(r.json()["passages"]) <= 3
    check_json(doc, "/api/query", "post", 200, r.json())
    r = requests.post(server + "/api/query", json={"question": " "}, timeout=30)
    assert r.status_code == 400
    check_json(doc, "/api/query", "post", 400, r.json())
    r = requests.post(server + "/api/query/stream", json={"question": "What is a Pod?"},
                      timeout=60, stream=True)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    events = dict(sse_events(r.text))
    check_json(doc, "/api/query", "post", 200, events["done"])
    r = requests.get(server + "/api/docs", timeout=30)
    assert r.status_code == 200 and "<script" not in r.text.lower()
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_docs_page_lists_every_operation_and_schema(c, doc):
    html = c.get("/api/docs").get_data(as_text=True)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert f'id="op-{op["operationId"]}"' in html
            assert f"<code>{path}</code>" in html.replace("&#x27;", "'")
    for name in doc["components"]["schemas"]:
        assert f"id='schema-{name}'" in html
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
