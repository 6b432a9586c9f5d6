"""Hard to break: any input gets an answer or a clear 4xx, limits hold, attacks fail."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbqa.app import create_app
from kbqa.kb import KnowledgeBase
from tests.conftest import make_config

REMOTE = {"REMOTE_ADDR": "203.0.113.7"}  # not the machine itself: limits apply


@pytest.fixture(scope="module")
def limited(corpus_index):
    cfg = make_config(index_dir=corpus_index, rate_limit="3/minute")
    return create_app(cfg, kb=KnowledgeBase(cfg)).test_client()


def test_rate_limit_per_address_answers_429_with_retry_after(limited):
    codes = [limited.post("/api/query", json={"question": "What is etcd?"}, environ_base=REMOTE)
             for _ in range(4)]
    assert [r.status_code for r in codes[:3]] == [200, 200, 200]
    over = codes[3]
    assert over.status_code == 429 and int(over.headers["Retry-After"]) > 0
    assert over.json["error"]["code"] == "rate_limited"
    # The stream endpoint shares the same budget.
    assert limited.post("/api/query/stream", json={"question": "etcd"},
                        environ_base=REMOTE).status_code == 429
    # Another address has its own budget; the machine itself is not limited.
    assert limited.post("/api/query", json={"question": "etcd"},
                        environ_base={"REMOTE_ADDR": "198.51.100.9"}).status_code == 200
    assert limited.post("/api/query", json={"question": "etcd"}).status_code == 200


def test_behind_a_proxy_the_forwarded_address_is_limited(corpus_index):
    cfg = make_config(index_dir=corpus_index, rate_limit="1/minute", trusted_proxies=1)
    c = create_app(cfg, kb=KnowledgeBase(cfg)).test_client()
    proxy = {"REMOTE_ADDR": "127.0.0.1"}
    first = c.post("/api/query", json={"question": "etcd"}, environ_base=proxy,
                   headers={"X-Forwarded-For": "192.0.2.1"})
    second = c.post("/api/query", json={"question": "etcd"}, environ_base=proxy,
                    headers={"X-Forwarded-For": "192.0.2.1"})
    other = c.post("/api/query", json={"question": "etcd"}, environ_base=proxy,
                   headers={"X-Forwarded-For": "192.0.2.2"})
    assert (first.status_code, second.status_code, other.status_code) == (200, 429, 200)


def test_cors_is_off_unless_configured(client, corpus_index):
    r = client.post("/api/query", json={"question": "etcd"}, headers={"Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in r.headers
    cfg = make_config(index_dir=corpus_index, cors_origins="https://docs.example")
    c = create_app(cfg, kb=KnowledgeBase(cfg)).test_client()
    ok = c.post("/api/query", json={"question": "etcd"}, headers={"Origin": "https://docs.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://docs.example"
    no = c.post("/api/query", json={"question": "etcd"}, headers={"Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in no.headers


@pytest.mark.parametrize("method,path", [("get", "/"), ("get", "/static/app.js"),
                                         ("get", "/api/health"), ("get", "/api/nope"),
                                         ("post", "/api/health"), ("get", "/articles/corpus/en/etcd.md")])
def test_security_headers_on_every_response(client, method, path):
    r = getattr(client, method)(path)
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp.replace("'self'", "")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("question", [
    "etcd 是什么？😀", "ما هو etcd؟", "e\u0301tcd\u0308 ?", "etcd\u0000 restore", "\u200b\u200b",
    "\U0001F600" * 100, "kube-proxy\u202e IPVS", "什麼是 etcd？",
])
def test_unicode_of_every_kind_is_answered_or_refused_cleanly(client, question):
    r = client.post("/api/query", json={"question": question})
    assert r.status_code in (200, 400), r.get_data(as_text=True)
    assert r.is_json


def test_lone_surrogates_in_json(client):
    raw = b'{"question": "etcd \\ud800 backup"}'
    r = client.post("/api/query", data=raw, content_type="application/json")
    assert r.status_code in (200, 400) and r.is_json


@pytest.mark.parametrize("body", [
    {"question": "etcd", "history": [{"question": "x"}] * 11},
    {"question": "etcd", "history": [{"question": "x" * 3000}]},
    {"question": "etcd", "history": [{"question": 1}]},
    {"question": "etcd", "history": "etcd"},
    {"question": "etcd", "history": [["etcd"]]},
    {"question": "\u0000\u0001 \t"},
    {"question": "etcd", "top_k": 1.5},
    {"question": "etcd", "top_k": "5"},
    {"question": ["etcd"]},
])
def test_malformed_bodies_get_a_clear_4xx(client, body):
    r = client.post("/api/query", json=body)
    assert 400 <= r.status_code < 500 and set(r.json["error"]) == {"code", "message"}


def test_body_size_limit_is_configurable(corpus_index):
    cfg = make_config(index_dir=corpus_index, max_body_bytes=1024)
    c = create_app(cfg, kb=KnowledgeBase(cfg)).test_client()
    r = c.post("/api/query", json={"question": "etcd", "history": [{"question": "x" * 900,
                                                                     "answer": "y" * 900}]})
    assert r.status_code == 413 and r.json["error"]["code"] == "payload_too_large"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=st.text(max_size=300))
def test_any_question_gives_200_or_4xx(client, question):
    r = client.post("/api/query", json={"question": question})
    assert r.status_code in (200, 400, 413), (question, r.status_code)
    assert r.is_json


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                         | st.text(max_size=40),
                         lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.sampled_from(["question", "top_k", "history", "x"]),
                                           inner, max_size=4),
                         max_leaves=12))
def test_any_json_body_never_gives_5xx(client, body):
    r = client.post("/api/query", data=json.dumps(body), content_type="application/json")
    assert r.status_code < 500, (body, r.status_code, r.get_data(as_text=True)[:200])


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=2000) | st.text(max_size=2000).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_bytes_as_a_markdown_page_are_ingested_or_skipped(tmp_path_factory, data):
    from kbqa.ingest import Skipped, iter_documents
    from kbqa.segment import chunk_document

    root = tmp_path_factory.mktemp("fuzz")
    (root / "en").mkdir()
    (root / "en" / "page.md").write_bytes(data)
    skipped: list[Skipped] = []
    docs = list(iter_documents(root, skipped=skipped))
    assert len(docs) + len(skipped) == 1
    for doc in docs:
        for c in chunk_document(doc):
            assert "{{<" not in c.text and "<!--" not in c.text


def test_hostile_pages_are_skipped_or_ingested_with_a_warning(tmp_path):
    from kbqa.ingest import Skipped, iter_documents

    root = tmp_path / "src" / "en"
    root.mkdir(parents=True)
    (root / "binary.md").write_bytes(bytes(range(256)) * 8)
    (root / "latin1.md").write_bytes("Caf\xe9 K8s".encode("latin-1"))
    (root / "front.md").write_text("---\ntitle: [unclosed\n---\nbody text here", encoding="utf-8")
    (root / "shortcode.md").write_text("# T\n\n{{< note >}}never closed\n\n```\nfence never closed",
                                       encoding="utf-8")
    (root / "long.md").write_text("# Long\n\n" + "kubelet " * 1_300_000, encoding="utf-8")  # ~10 MB line
    skipped: list[Skipped] = []
    docs = {d.source: d for d in iter_documents(tmp_path / "src", skipped=skipped)}
    assert len(docs) + len(skipped) == 5
    assert all(s.reason for s in skipped)
    assert "en/shortcode.md" in docs and "en/long.md" in docs


XSS_PAGE = """---
title: Hostile page
---
# Hostile kube-proxy page

kube-proxy hostile sentence one <script>window.__xss=1</script> is here.
Another kube-proxy line <img src=x onerror="window.__xss=2"> with an image.
A [kube-proxy link](javascript:window.__xss=3) and raw <a href="javascript:alert(1)">link</a>.
An SVG <svg onload="window.__xss=4"><script>alert(1)</script></svg> in kube-proxy text.
"""


def test_planted_payloads_never_reach_html(tmp_path):
    src = tmp_path / "corpus" / "en"
    src.mkdir(parents=True)
    (src / "hostile.md").write_text(XSS_PAGE, encoding="utf-8")
    cfg = make_config(index_dir=tmp_path / "index", sources=(tmp_path / "corpus",))
    kb = KnowledgeBase(cfg)
    kb.build()
    c = create_app(cfg, kb=kb).test_client()
    res = c.post("/api/query", json={"question": "kube-proxy hostile <script>alert(1)</script>"}).json
    page = c.get("/articles/corpus/en/hostile.md").get_data(as_text=True)
    api = c.get("/api/articles/corpus/en/hostile.md").json["html"]
    for html in (res["answer_html"], page, api):
        low = html.lower()
        assert "<script" not in low.replace("<script src=", "") and "onerror" not in low
        assert "onload" not in low and "javascript:" not in low and "<svg" not in low


@pytest.mark.parametrize("path", [
    "/static/../kbqa/config.py", "/static/..%2f..%2fpyproject.toml", "/static/%2e%2e/README.md",
    "/articles/corpus/../../pyproject.toml", "/api/articles/corpus/..%2f..%2fpyproject.toml",
    "/articles/corpus/%2e%2e/%2e%2e/etc/passwd", "/static//etc/passwd", "/static/.%2e/.%2e/etc/passwd",
])
def test_path_traversal_reads_nothing(client, path):
    r = client.get(path, follow_redirects=True)  # "//" is merged by a redirect, then 404
    assert r.status_code in (400, 404)
    body = r.get_data(as_text=True)
    assert "root:" not in body and "[project]" not in body and "class Config" not in body
