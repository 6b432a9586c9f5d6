"""GET /metrics: Prometheus text, by endpoint and status, the served index, re-indexes,
and one total over gunicorn's worker processes.

Metric values live for the whole test process (every app made here shares them),
so each test compares a scrape before and after what it does.
"""

from __future__ import annotations

import calendar
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from kbqa.app import create_app
from kbqa.config import Config
from kbqa.kb import KnowledgeBase
from kbqa.metrics import LATENCY_BUCKETS, UNMATCHED
from tests.conftest import make_config

TOKEN = "metrics-admin-token"


def parse(text: str) -> dict:
    """{(sample name, frozenset of labels): value} of one exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def scrape(client) -> dict:
    r = client.get("/metrics")
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    assert r.mimetype == "text/plain" and "version=0.0.4" in r.headers["Content-Type"]
    return parse(r.get_data(as_text=True))


def val(m: dict, name: str, **labels) -> float:
    return m.get((name, frozenset(labels.items())), 0.0)


def requests_of(m: dict, endpoint: str, status: int) -> tuple[float, float]:
    """(requests counted, latency observations) for one endpoint and status."""
    labels = {"endpoint": endpoint, "status": str(status)}
    return (val(m, "kbqa_http_requests_total", **labels),
            val(m, "kbqa_http_request_duration_seconds_count", **labels))


def test_queries_are_counted_and_timed_by_endpoint_and_status(client):
    before = scrape(client)
    questions = ["What is etcd?", "kubelet 做什么？", "What does kube-proxy do?",
                 "What is the best pizza recipe?"]
    for q in questions:
        assert client.post("/api/query", json={"question": q}).status_code == 200
    after = scrape(client)
    n = len(questions)
    b, a = requests_of(before, "api.query", 200), requests_of(after, "api.query", 200)
    assert (a[0] - b[0], a[1] - b[1]) == (n, n)
    # Every observation lands in +Inf, and at most n of them in the smallest bucket.
    name = "kbqa_http_request_duration_seconds_bucket"
    inf = {"endpoint": "api.query", "status": "200", "le": "+Inf"}
    assert val(after, name, **inf) - val(before, name, **inf) == n
    buckets = {float(dict(labels)["le"]) for (s, labels) in after
               if s == name and dict(labels)["endpoint"] == "api.query"}
    assert buckets == set(LATENCY_BUCKETS) | {float("inf")}
    assert min(buckets) == 0.001 and max(buckets - {float("inf")}) == 5.0
    # The answers: three found, the pizza one not.
    found = val(after, "kbqa_answers_total", found="true", mode="extractive") - \
        val(before, "kbqa_answers_total", found="true", mode="extractive")
    missed = val(after, "kbqa_answers_total", found="false", mode="extractive") - \
        val(before, "kbqa_answers_total", found="false", mode="extractive")
    assert (found, missed) == (3, 1)


def test_stream_answers_are_counted(client):
    before = scrape(client)
    r = client.post("/api/query/stream", json={"question": "etcd 的作用是什么？"})
    assert r.status_code == 200 and "event: done" in r.get_data(as_text=True)
    after = scrape(client)
    assert requests_of(after, "api.query_stream", 200)[0] - \
        requests_of(before, "api.query_stream", 200)[0] == 1
    assert val(after, "kbqa_answers_total", found="true", mode="extractive") - \
        val(before, "kbqa_answers_total", found="true", mode="extractive") == 1


def test_errors_show_their_status_and_unknown_paths_one_fixed_label(client):
    before = scrape(client)
    assert client.post("/api/query", json={"question": ""}).status_code == 400
    assert client.post("/api/query", json={"question": "x" * 5000}).status_code == 413
    paths = ["/no/such/page-7f3a", "/api/nothing-here-91c2", "/wp-admin/setup.php"]
    for path in paths:
        assert client.get(path).status_code == 404
    assert client.get("/api/query").status_code == 405  # no route for GET either
    text = client.get("/metrics").get_data(as_text=True)
    after = parse(text)
    assert requests_of(after, "api.query", 400)[0] - requests_of(before, "api.query", 400)[0] == 1
    assert requests_of(after, "api.query", 400)[1] - requests_of(before, "api.query", 400)[1] == 1
    assert requests_of(after, "api.query", 413)[0] - requests_of(before, "api.query", 413)[0] == 1
    assert requests_of(after, UNMATCHED, 404)[0] - requests_of(before, UNMATCHED, 404)[0] == 3
    assert requests_of(after, UNMATCHED, 405)[0] - requests_of(before, UNMATCHED, 405)[0] == 1
    for path in paths:  # the raw path never becomes a label value
        assert path not in text and path.rsplit("/", 1)[-1] not in text
    endpoints = {dict(labels).get("endpoint") for (s, labels) in after
                 if s == "kbqa_http_requests_total"}
    assert endpoints <= {r.endpoint for r in client.application.url_map.iter_rules()} | {UNMATCHED}


def test_index_gauges_are_those_of_the_served_index(client, kb):
    m = scrape(client)
    health = client.get("/api/health").get_json()
    idx = kb.index
    assert val(m, "kbqa_index_loaded") == 1
    assert val(m, "kbqa_index_info", version=health["version"],
               kbqa_version=idx.manifest["kbqa_version"]) == 1
    assert [dict(labels)["version"] for (s, labels) in m if s == "kbqa_index_info"] == \
        [health["version"]]
    assert val(m, "kbqa_index_chunks") == health["chunks"] == len(idx.chunks)
    assert val(m, "kbqa_index_documents") == health["documents"]
    for name in health["models"]:
        assert val(m, "kbqa_index_vectors", encoder=name) == health["chunks"]
    on_disk = sum(p.stat().st_size for p in idx.path.rglob("*") if p.is_file())
    assert val(m, "kbqa_index_size_bytes") == on_disk > 0
    built = calendar.timegm(time.strptime(idx.manifest["built_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert val(m, "kbqa_index_built_timestamp_seconds") == built


@pytest.fixture
def own_index(corpus_index, tmp_path) -> Path:
    """A copy of the session index: re-indexed or swapped here without touching it."""
    dest = tmp_path / "idx"
    shutil.copytree(corpus_index, dest,
                    ignore=shutil.ignore_patterns(".lock", ".reindex-status.json"))
    return dest


def test_a_hot_swap_shows_the_new_version(own_index, tmp_path):
    cfg = make_config(index_dir=own_index, feedback_db=tmp_path / "fb.sqlite3")
    client = create_app(cfg, kb=KnowledgeBase(cfg)).test_client()
    old = (own_index / "CURRENT").read_text().strip()
    assert [dict(lb)["version"] for (s, lb) in scrape(client) if s == "kbqa_index_info"] == [old]
    new = "v-29990101T000000-000000-1"  # the same files under a newer version's name
    shutil.copytree(own_index / old, own_index / new)
    (own_index / "CURRENT").write_text(new)
    deadline = time.monotonic() + 60
    while True:
        versions = [dict(lb)["version"] for (s, lb) in scrape(client) if s == "kbqa_index_info"]
        if versions == [new]:
            break
        assert time.monotonic() < deadline, f"/metrics still shows {versions}"
        time.sleep(0.3)
    assert client.get("/api/health").get_json()["version"] == new


def _wait_done(client, timeout: float = 120) -> dict:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = client.get("/api/admin/status", headers=auth).get_json()
        if not st["running"] and st["state"] != "idle":
            return st
        time.sleep(0.1)
    raise AssertionError("re-index did not finish")


def test_reindex_results_and_times(own_index, tmp_path):
    cfg = make_config(index_dir=own_index, admin_token=TOKEN,
                      feedback_db=tmp_path / "fb.sqlite3")
    kb = KnowledgeBase(cfg)
    client = create_app(cfg, kb=kb).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    last = "kbqa_reindex_last_completion_timestamp_seconds"
    last_ok = "kbqa_reindex_last_success_timestamp_seconds"

    before = scrape(client)
    t0 = time.time()
    assert client.post("/api/admin/reindex", headers=auth).status_code == 202
    st = _wait_done(client)
    assert st["state"] == "done", st
    mid = scrape(client)
    assert val(mid, "kbqa_reindex_total", result="success") - \
        val(before, "kbqa_reindex_total", result="success") == 1
    assert val(mid, "kbqa_reindex_total", result="failure") == \
        val(before, "kbqa_reindex_total", result="failure")
    assert t0 <= val(mid, last) <= time.time() and val(mid, last_ok) == val(mid, last)
    assert 0 < val(mid, "kbqa_reindex_last_duration_seconds") < time.time() - t0 + 1
    assert val(mid, "kbqa_reindex_in_progress") == 0

    def broken_build(*args, **kwargs):
        raise RuntimeError("disk on fire")

    kb.build = broken_build
    t1 = time.time()
    assert client.post("/api/admin/reindex", headers=auth, json={"full": True}).status_code == 202
    st = _wait_done(client)
    assert st["state"] == "failed" and "disk on fire" in st["last_error"]
    after = scrape(client)
    assert val(after, "kbqa_reindex_total", result="failure") - \
        val(mid, "kbqa_reindex_total", result="failure") == 1
    assert val(after, "kbqa_reindex_total", result="success") == \
        val(mid, "kbqa_reindex_total", result="success")
    assert val(after, last) >= t1 > val(after, last_ok) == val(mid, last_ok)


def test_not_rate_limited_and_429s_counted(kb, tmp_path):
    cfg = make_config(index_dir=kb.config.index_dir, rate_limit="2/minute",
                      rate_limit_exempt="", feedback_db=tmp_path / "fb.sqlite3")
    client = create_app(cfg, kb=kb).test_client()
    before = scrape(client)
    codes = [client.post("/api/query", json={"question": "What is a Pod?"}).status_code
             for _ in range(3)]
    assert codes == [200, 200, 429]
    for _ in range(10):
        assert client.get("/metrics").status_code == 200
    after = scrape(client)
    assert val(after, "kbqa_rate_limited_total", endpoint="api.query") - \
        val(before, "kbqa_rate_limited_total", endpoint="api.query") == 1
    assert requests_of(after, "api.query", 429)[0] - requests_of(before, "api.query", 429)[0] == 1


def test_disabled_metrics_are_a_404(kb, tmp_path):
    cfg = Config.from_env(env={"KBQA_METRICS_ENABLED": "false"}, index_dir=kb.config.index_dir,
                          feedback_db=tmp_path / "fb.sqlite3")
    assert cfg.metrics_enabled is False
    assert Config.from_env(env={"KBQA_METRICS_ENABLED": "1"}).metrics_enabled is True
    with pytest.raises(ValueError, match="KBQA_METRICS_ENABLED"):
        Config.from_env(env={"KBQA_METRICS_ENABLED": "maybe"})
    client = create_app(cfg, kb=kb).test_client()
    r = client.get("/metrics")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    assert "/metrics" not in client.get("/api/openapi.json").get_json()["paths"]
    enabled = create_app(make_config(index_dir=kb.config.index_dir), kb=kb).test_client()
    assert "/metrics" in enabled.get("/api/openapi.json").get_json()["paths"]


def test_metrics_folder_is_emptied_or_made_and_dead_workers_forgotten(tmp_path, monkeypatch):
    from kbqa import server

    given = tmp_path / "mp"
    given.mkdir()
    (given / "counter_1.db").write_bytes(b"old run")
    (given / "notes.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    assert server.metrics_dir() == (str(given), False)
    assert sorted(p.name for p in given.iterdir()) == ["notes.txt"]
    for name in ("gauge_livesum_42.db", "gauge_max_42.db", "counter_42.db",
                 "gauge_livesum_43.db"):
        (given / name).write_bytes(b"")
    server._child_exit(None, SimpleNamespace(pid=42))
    assert sorted(p.name for p in given.glob("*.db")) == [
        "counter_42.db", "gauge_livesum_43.db", "gauge_max_42.db"]
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    made, owned = server.metrics_dir()
    try:
        assert owned and Path(made).is_dir() and not any(Path(made).iterdir())
        assert server.metrics_dir()[0] != made  # a fresh one per server run
    finally:
        shutil.rmtree(made)


def test_one_total_over_the_gunicorn_workers(server):
    """`kbqa serve` with 2 workers: every scrape, whichever worker answers, adds both up."""
    def get(path):
        r = requests.get(server + path, timeout=30)
        assert r.status_code == 200
        return r

    def total(m):
        return requests_of(m, "api.query", 200)

    deadline = time.monotonic() + 60
    while val(first := parse(get("/metrics").text), "kbqa_worker_processes") != 2:
        # The first worker can answer before the second one is forked.
        assert time.monotonic() < deadline, "the server never had 2 live workers"
        time.sleep(0.2)
    n = 40
    questions = ["What is etcd?", "kubelet 做什么？", "What does kube-proxy do?", "什么是 Pod？"]

    def ask(i):
        # A new connection each time: gunicorn's workers take turns accepting them.
        r = requests.post(server + "/api/query", json={"question": questions[i % 4]},
                          timeout=60, headers={"Connection": "close"})
        return r.status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(n))) == [200] * n
    # Several scrapes on new connections: whichever worker answers sees the same sums.
    for _ in range(6):
        m = parse(get("/metrics").text)
        assert (total(m)[0] - total(first)[0], total(m)[1] - total(first)[1]) == (n, n)
        assert val(m, "kbqa_worker_processes") == 2
    version = get("/api/health").json()["version"]
    assert [dict(lb)["version"] for (s, lb) in m if s == "kbqa_index_info"] == [version]
