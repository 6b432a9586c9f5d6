import re
import json

import pytest


def post(client, body, **kw):
    return client.post("/api/query", data=json.dumps(body), content_type="application/json", **kw)


def assert_error(resp, status, code=None):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code


def test_query_returns_the_documented_shape(client):
    resp = post(client, {"question": "etcd 的作用是什么？", "top_k": 3})
    assert resp.status_code == 200
    body = resp.get_json()
    assert {"answer", "found", "lang", "passages", "took_ms"} <= set(body)
    assert body["found"] is True and body["lang"] == "zh" and len(body["passages"]) == 3
    for p in body["passages"]:
        assert {"id", "source", "lang", "title", "heading", "text", "score", "url"} <= set(p)
        assert p["lang"] in ("zh", "en") and p["source"].endswith(".md")
    assert re.search(r"\[[1-3]\]", body["answer"]) and isinstance(body["took_ms"], float)


def test_default_top_k_is_5(client):
    assert len(post(client, {"question": "What is the kubelet?"}).get_json()["passages"]) == 5


def test_out_of_domain_question_gets_found_false(client):
    body = post(client, {"question": "How do I bake a chocolate cake?"}).get_json()
    assert body["found"] is False and body["passages"] == []


@pytest.mark.parametrize("body,status,code", [
    ({}, 400, "missing_question"),
    ({"question": ""}, 400, "empty_question"),
    ({"question": "   \n\t "}, 400, "empty_question"),
    ({"question": "\u0000\u0001\u0007"}, 400, "empty_question"),
    ({"question": 42}, 400, "invalid_question"),
    ({"question": ["etcd"]}, 400, "invalid_question"),
    ({"question": "etcd", "top_k": 0}, 400, "invalid_top_k"),
    ({"question": "etcd", "top_k": 51}, 400, "invalid_top_k"),
    ({"question": "etcd", "top_k": "5"}, 400, "invalid_top_k"),
    ({"question": "etcd", "top_k": 2.5}, 400, "invalid_top_k"),
    ({"question": "etcd", "top_k": True}, 400, "invalid_top_k"),
    ({"question": "etcd " * 500}, 413, "question_too_long"),
    ([], 400, "invalid_body"),
    ("etcd", 400, "invalid_body"),
])
def test_bad_query_bodies_get_json_4xx(client, body, status, code):
    assert_error(post(client, body), status, code)


def test_body_not_json(client):
    resp = client.post("/api/query", data="{not json", content_type="application/json")
    assert_error(resp, 400, "invalid_json")


def test_wrong_content_type(client):
    resp = client.post("/api/query", data="question=etcd",
                       content_type="application/x-www-form-urlencoded")
    assert_error(resp, 415, "unsupported_media_type")


def test_body_too_large(client):
    resp = client.post("/api/query", data=json.dumps({"question": "x" * 100_000}),
                       content_type="application/json")
    assert_error(resp, 413)


def test_unknown_endpoint_and_wrong_method_are_json(client):
    assert_error(client.get("/api/nope"), 404, "not_found")
    assert_error(client.get("/api/query"), 405, "method_not_allowed")


def test_health_reports_index_stats(client, kb):
    body = client.get("/api/health").get_json()
    assert body["status"] == "ok" and body["chunks"] == len(kb.index.chunks)
    assert body["documents"] >= 24 and "use-multilingual-v3" in body["models"]
    assert body["built_at"].endswith("Z")


def test_chat_page_and_static_files_served_with_security_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and b"/static/app.js" in page.data
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/static/app.js").status_code == 200


@pytest.mark.parametrize("path", ["/static/../kbqa/app.py", "/static/..%2fpyproject.toml",
                                  "/static/%2e%2e/README.md", "/articles/corpus/../pyproject.toml"])
def test_no_file_outside_the_served_folders(client, path):
    resp = client.get(path)
    assert resp.status_code == 404


def test_article_page_for_our_corpus(client):
    body = post(client, {"question": "etcd snapshot restore"}).get_json()
    url = next(p["url"] for p in body["passages"] if p["url"].startswith("/articles/") and "#" in p["url"])
    path, anchor = url.split("#")
    page = client.get(path)
    assert page.status_code == 200 and b"etcdutl" in page.data
    from urllib.parse import unquote

    assert f'id="{unquote(anchor)}"' in page.get_data(as_text=True)  # the link scrolls to the passage
    assert b"<script" not in page.data.replace(b'<script src="/static', b"")
