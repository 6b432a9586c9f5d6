"""Admin endpoints: off without a token, bearer-protected with one, re-index in the background."""

from __future__ import annotations

import logging
import shutil
import threading
import time

import pytest

from kbqa.app import create_app
from kbqa.index import BuildLock
from kbqa.kb import KnowledgeBase
from tests.conftest import CORPUS, make_config

TOKEN = "s3cret-admin-token-\u00e9"  # non-ASCII on purpose: compared as bytes


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("admin")
    src = tmp / "src"
    (src / "en").mkdir(parents=True)
    for name in ("etcd.md", "kubelet.md"):
        shutil.copy(CORPUS / "en" / name, src / "en" / name)
    cfg = make_config(index_dir=tmp / "idx", sources=(src,), admin_token=TOKEN)
    KnowledgeBase(cfg).build()
    kb = KnowledgeBase(cfg)
    # The apps standing for other workers are made now, before any re-index
    # thread runs: CPython 3.11.7 can fail compile() ("AST constructor
    # recursion depth mismatch", fixed in 3.11.8) when another thread compiles
    # at the same moment, and Flask compiles its URL rules in create_app.
    others = [create_app(cfg, kb=KnowledgeBase(cfg)).test_client() for _ in range(2)]
    return {"src": src, "cfg": cfg, "kb": kb, "client": create_app(cfg, kb=kb).test_client(),
            "others": others}


def _auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _wait_done(client, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = client.get("/api/admin/status", headers=_auth()).get_json()
        if not st["running"] and st["state"] != "idle":
            return st
        time.sleep(0.2)
    raise AssertionError("re-index did not finish")


def test_disabled_without_a_token(setup):
    cfg = make_config(index_dir=setup["cfg"].index_dir)
    assert cfg.admin_token is None
    client = create_app(cfg, kb=KnowledgeBase(cfg)).test_client()
    for method, url in (("post", "/api/admin/reindex"), ("get", "/api/admin/status")):
        for headers in ({}, _auth(), _auth("")):
            r = getattr(client, method)(url, headers=headers)
            assert r.status_code == 403, (url, headers)
            assert r.get_json()["error"]["code"] == "admin_disabled"
            assert "KBQA_ADMIN_TOKEN" in r.get_json()["error"]["message"]


@pytest.mark.parametrize("headers,code", [
    ({}, "unauthorized"),
    ({"Authorization": "Bearer"}, "unauthorized"),
    ({"Authorization": f"Basic {TOKEN}"}, "unauthorized"),
    ({"Authorization": "Bearer wrong-token"}, "invalid_token"),
    ({"Authorization": f"Bearer {TOKEN}x"}, "invalid_token"),
])
def test_wrong_or_missing_token_is_refused(setup, headers, code):
    for r in (setup["client"].post("/api/admin/reindex", headers=headers),
              setup["client"].get("/api/admin/status", headers=headers)):
        assert r.status_code == 401 and r.get_json()["error"]["code"] == code
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_bad_body_is_a_400(setup):
    r = setup["client"].post("/api/admin/reindex", headers=_auth(), json={"full": "yes"})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_full"
    r = setup["client"].post("/api/admin/reindex", headers=_auth(), data="[1, 2]",
                             content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_body"


def test_reindex_runs_in_the_background_and_the_service_swaps_to_it(setup, caplog):
    caplog.set_level(logging.DEBUG)
    client, src = setup["client"], setup["src"]
    old = client.get("/api/health").get_json()["version"]
    st = client.get("/api/admin/status", headers=_auth()).get_json()
    assert st["serving"] == old
    shutil.copy(CORPUS / "en" / "kube-proxy.md", src / "en" / "kube-proxy.md")
    with open(src / "en" / "etcd.md", "a", encoding="utf-8") as fh:
        fh.write("\netcd keeps its data in a write-ahead log on disk.\n")
    r = client.post("/api/admin/reindex", headers=_auth())
    assert r.status_code == 202 and r.get_json()["status_url"] == "/api/admin/status"
    st = _wait_done(client)
    assert st["state"] == "done" and st["last_error"] is None, st
    res = st["last_result"]
    assert (res["added"], res["changed"], res["removed"]) == (1, 1, 0) and not res["full"]
    assert res["embedded"] < res["chunks"] and res["version"] != old
    deadline = time.monotonic() + 60
    while client.get("/api/health").get_json()["version"] != res["version"]:
        assert time.monotonic() < deadline, "the service did not swap to the new version"
        time.sleep(0.2)
    body = client.post("/api/query", json={"question": "What does kube-proxy do?"}).get_json()
    assert any(p["source"] == "en/kube-proxy.md" for p in body["passages"])
    assert TOKEN not in caplog.text and TOKEN.encode().decode("latin-1") not in caplog.text


def test_full_reindex_and_a_second_request_while_running(setup):
    client, kb = setup["client"], setup["kb"]
    gate = threading.Event()
    real_build = kb.build

    def gated_build(*args, **kwargs):  # the real build, started when the test says so
        gate.wait(60)
        return real_build(*args, **kwargs)

    kb.build = gated_build
    try:
        r = client.post("/api/admin/reindex", headers=_auth(), json={"full": True})
        assert r.status_code == 202 and r.get_json()["full"] is True
        st = client.get("/api/admin/status", headers=_auth()).get_json()
        assert st["state"] == "running" and st["running"]
        r = client.post("/api/admin/reindex", headers=_auth())
        assert r.status_code == 409 and r.get_json()["error"]["code"] == "reindex_running"
        gate.set()
        st = _wait_done(client)
    finally:
        gate.set()
        kb.build = real_build
    assert st["state"] == "done" and st["last_result"]["full"]
    assert st["last_result"]["full_reason"] == "--full" and st["last_result"]["reused"] == 0


def test_reindex_while_another_build_holds_the_lock_is_a_409(setup):
    import os

    with BuildLock(setup["cfg"].index_dir):
        r = setup["client"].post("/api/admin/reindex", headers=_auth(), json={"full": True})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "reindex_running"
    assert f"pid {os.getpid()}" in r.get_json()["error"]["message"]


def test_status_is_shared_by_worker_processes(setup):
    """`kbqa serve` forks workers: a GET on another worker sees the same job."""
    cfg = setup["cfg"]
    other = setup["others"][0]  # a second worker's app
    mine = setup["client"].get("/api/admin/status", headers=_auth()).get_json()
    theirs = other.get("/api/admin/status", headers=_auth()).get_json()
    assert theirs["last_result"] == mine["last_result"] and theirs["state"] == mine["state"]
    assert mine["last_result"]["version"]


def test_a_job_whose_worker_died_shows_as_interrupted(setup):
    import json as _json

    cfg = setup["cfg"]
    status = cfg.index_dir / ".reindex-status.json"
    saved = status.read_text()
    try:
        status.write_text(_json.dumps({**_json.loads(saved), "state": "running", "running": True,
                                       "pid": 999999}))
        fresh = setup["others"][1]
        st = fresh.get("/api/admin/status", headers=_auth()).get_json()
        assert st["state"] == "failed" and not st["running"]
        assert "999999" in st["last_error"] and "interrupted" in st["last_error"]
    finally:
        status.write_text(saved)
