"""Feedback: POST /api/feedback into SQLite, `kbqa feedback export`, and failure isolation."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import ROOT, make_config, run_cli
from kbqa.app import create_app
from kbqa.feedback import FeedbackStore

GOOD = {
    "rating": "down",
    "comment": "没有提到 Raft 的细节 / missing the Raft details",
    "question": "etcd 的作用是什么？",
    "answer": "etcd 是 Kubernetes 的键值存储 [1]。",
    "passages": [{"id": "corpus:zh/etcd.md#0", "source": "zh/etcd.md",
                  "url": "/articles/corpus/zh/etcd.md"}],
    "lang": "zh",
}


@pytest.fixture()
def fb_app(kb, tmp_path):
    """The real app over the session index, with its own feedback database."""
    cfg = make_config(index_dir=kb.config.index_dir, feedback_db=tmp_path / "fb.sqlite3")
    return create_app(cfg, kb=kb)


@pytest.fixture()
def live(fb_app):
    """fb_app behind a real waitress server (8 threads) on a free port."""
    from waitress import create_server

    srv = create_server(fb_app, host="127.0.0.1", port=0, threads=8)
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.effective_port}"
    srv.close()
    t.join(timeout=10)


def test_feedback_is_stored_with_question_answer_sources_and_exported(fb_app, tmp_path):
    c = fb_app.test_client()
    r = c.post("/api/feedback", json=GOOD)
    assert r.status_code == 201
    first = r.get_json()["id"]
    r = c.post("/api/feedback", json={"rating": "up", "question": "What does kube-proxy do?",
                                      "answer": "It proxies Services [1].", "lang": "en"})
    assert r.status_code == 201 and r.get_json()["id"] == first + 1

    db = tmp_path / "fb.sqlite3"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    out = tmp_path / "feedback.jsonl"
    res = run_cli("feedback", "export", "--out", str(out), env={"KBQA_FEEDBACK_DB": str(db)})
    assert res.returncode == 0, res.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    rec = json.loads(lines[0])
    for key in ("rating", "comment", "question", "answer", "passages", "lang"):
        assert rec[key] == GOOD[key]
    assert rec["id"] == first and rec["created_at"].endswith("+00:00")
    assert "没有提到" in lines[0], "export keeps Chinese readable (no \\u escapes)"
    second = json.loads(lines[1])
    assert second["comment"] == "" and second["passages"] == [] and second["rating"] == "up"

    # Without --out the same lines go to standard output.
    res = run_cli("feedback", "export", "--db", str(db))
    assert res.returncode == 0 and res.stdout.splitlines() == lines


@pytest.mark.parametrize("body, status, code, words", [
    ({**GOOD, "rating": "meh"}, 400, "invalid_feedback", "rating must be one of up, down"),
    ({k: v for k, v in GOOD.items() if k != "rating"}, 400, "invalid_feedback",
     "rating is required"),
    ({k: v for k, v in GOOD.items() if k != "question"}, 400, "invalid_feedback",
     "question is required"),
    ({**GOOD, "question": ""}, 400, "invalid_feedback", "question must not be empty"),
    ({**GOOD, "comment": "x" * 2001}, 400, "invalid_feedback", "longer than 2000"),
    ({**GOOD, "comment": 5}, 400, "invalid_feedback", "comment must be of type string"),
    ({**GOOD, "lang": "fr"}, 400, "invalid_feedback", "lang must be one of zh, en"),
    ({**GOOD, "passages": [{"id": 3, "source": "x"}]}, 400, "invalid_feedback",
     "passages[0].id must be of type string"),
    ({**GOOD, "passages": [{"source": "x"}]}, 400, "invalid_feedback",
     "passages[0].id is required"),
    ({**GOOD, "stars": 5}, 400, "invalid_feedback", "unknown field 'stars'"),
    (["up"], 400, "invalid_body", "JSON object"),
])
def test_invalid_feedback_is_refused_with_one_clear_message(fb_app, tmp_path, body, status,
                                                            code, words):
    r = fb_app.test_client().post("/api/feedback", json=body)
    assert r.status_code == status
    err = r.get_json()["error"]
    assert err["code"] == code and words in err["message"]
    assert "x" * 50 not in err["message"], "the message does not echo the value"
    assert not (tmp_path / "fb.sqlite3").exists() or FeedbackStore(
        tmp_path / "fb.sqlite3").count() == 0


def test_feedback_must_be_json(fb_app):
    c = fb_app.test_client()
    r = c.post("/api/feedback", data="rating=up")
    assert r.status_code == 415 and r.get_json()["error"]["code"] == "unsupported_media_type"
    r = c.post("/api/feedback", data="{not json", content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_json"
    r = c.get("/api/feedback")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"


def test_concurrent_posts_over_http_lose_nothing(live, tmp_path):
    """8 server threads, 16 client threads, 160 ratings: 160 rows, 160 distinct ids."""
    def post(i: int) -> int:
        with requests.Session() as s:
            r = s.post(live + "/api/feedback", timeout=60,
                       json={**GOOD, "comment": f"c{i}", "rating": "up" if i % 2 else "down"})
            assert r.status_code == 201, r.text
            return r.json()["id"]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(post, range(160)))
    assert len(set(ids)) == 160
    recs = list(FeedbackStore(tmp_path / "fb.sqlite3").records())
    assert sorted(r["comment"] for r in recs) == sorted(f"c{i}" for i in range(160))


def test_concurrent_processes_lose_nothing(tmp_path):
    """Two writer processes at once (e.g. two server workers) on one database file."""
    db = tmp_path / "shared.sqlite3"
    code = ("import sys; from kbqa.feedback import FeedbackStore; s = FeedbackStore(sys.argv[1]);"
            "[s.add({'rating': 'up', 'question': sys.argv[2] + str(i), 'answer': 'a'})"
            " for i in range(150)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), name], cwd=ROOT)
             for name in ("p", "q")]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    questions = [r["question"] for r in FeedbackStore(db).records()]
    assert len(questions) == 300 and len(set(questions)) == 300


def test_corrupt_database_answers_503_and_questions_still_work(live, tmp_path):
    db = tmp_path / "fb.sqlite3"
    db.write_bytes(b"this is not an SQLite database" * 100)
    r = requests.post(live + "/api/feedback", json=GOOD, timeout=30)
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "feedback_unavailable" and "answers still work" in err["message"]
    r = requests.post(live + "/api/query", json={"question": "What does kube-proxy do?"},
                      timeout=60)
    assert r.status_code == 200 and r.json()["found"] is True
    assert requests.get(live + "/api/health", timeout=30).status_code == 200

    res = run_cli("feedback", "export", "--db", str(db))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: feedback store") and "move" in lines[0]


def test_unwritable_location_answers_503(kb, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    cfg = make_config(index_dir=kb.config.index_dir, feedback_db=blocker / "fb.sqlite3")
    r = create_app(cfg, kb=kb).test_client().post("/api/feedback", json=GOOD)
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "feedback_unavailable"


def test_export_without_database_fails_in_one_line(tmp_path):
    res = run_cli("feedback", "export", "--db", str(tmp_path / "none.sqlite3"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "no feedback database" in res.stderr
