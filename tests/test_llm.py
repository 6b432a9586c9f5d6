"""The optional language model, over its real protocol.

No language model runs on these machines, so the suite starts a small
OpenAI-compatible ``/v1/chat/completions`` server on localhost. It answers
from what kbqa sends it (the first sentence of passage [1], cited), so the
tests check the protocol and the fallbacks, not a canned text.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kbqa.kb import KnowledgeBase
from tests.conftest import free_port, make_config


class FakeModel:
    """What the server does next: "ok", "error", "slow", "uncited" or "garbage"."""

    def __init__(self):
        self.behaviour = "ok"
        self.requests: list[dict] = []


def answer_from(messages: list[dict]) -> str:
    """The first sentence of passage [1] in the system message, cited."""
    system = messages[0]["content"]
    body = system.split("[1]", 1)[1].split("\n", 2)[2]
    first = re.split(r"(?<=[。.!?])\s*", body.strip(), maxsplit=1)[0]
    return f"{first} [1]"


def make_handler(model: FakeModel):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_POST(self):
            if self.path != "/v1/chat/completions":
                self.send_error(404)
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            model.requests.append(body)
            if model.behaviour == "error":
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b'{"error": "model crashed"}')
                return
            if model.behaviour == "slow":
                time.sleep(2.5)
            text = answer_from(body["messages"])
            if model.behaviour == "uncited":
                text = re.sub(r"\s*\[\d+\]", "", text)
            if not body.get("stream"):
                payload = {"choices": [{"message": {"role": "assistant", "content": text}}]}
                if model.behaviour == "garbage":
                    payload = {"unexpected": True}
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            pieces = [text[i:i + 7] for i in range(0, len(text), 7)]
            for piece in pieces:
                chunk = {"choices": [{"delta": {"content": piece}}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler


@pytest.fixture(scope="module")
def fake_llm():
    model = FakeModel()
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(model))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield model, f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture()
def llm_kb(corpus_index, fake_llm):
    model, url = fake_llm
    model.behaviour = "ok"
    model.requests.clear()
    return KnowledgeBase(make_config(index_dir=corpus_index, llm_url=url, llm_model="tiny",
                                     llm_timeout=1.0)), model


def test_llm_answer_is_grounded_in_the_passages(llm_kb):
    kb, model = llm_kb
    res = kb.ask("etcd 的作用是什么？")
    assert res["mode"] == "llm" and res["mode_note"] is None
    sent = model.requests[-1]
    assert sent["model"] == "tiny" and sent["stream"] is False
    assert sent["messages"][-1] == {"role": "user", "content": "etcd 的作用是什么？"}
    system = sent["messages"][0]["content"]
    # Every returned passage went to the model, numbered as the answer cites them.
    for n, p in enumerate(res["passages"], 1):
        assert f"[{n}] {p['title']}" in system
    assert "简体中文" in system
    first = res["passages"][0]["text"]
    assert res["answer"].endswith("[1]") and res["answer"][:10] in first


def test_llm_stream_over_http(llm_kb):
    from kbqa.app import create_app

    kb, model = llm_kb
    client = create_app(kb.config, kb=kb).test_client()
    resp = client.post("/api/query/stream", json={"question": "What does kube-proxy do?"})
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    events = [(m.group(1), json.loads(m.group(2))) for m in
              re.finditer(r"event: (\w+)\ndata: (.*)\n\n", resp.get_data(as_text=True))]
    names = [e for e, _ in events]
    assert names[0] == "meta" and names[-1] == "done" and names.count("delta") >= 2
    streamed = "".join(d["text"] for e, d in events if e == "delta")
    done = events[-1][1]
    assert done["mode"] == "llm" and done["answer"] == streamed
    assert model.requests[-1]["stream"] is True


@pytest.mark.parametrize("behaviour,note", [
    ("error", "HTTP 500"),
    ("slow", "within 1 s"),
    ("uncited", "cites no passage"),
    ("garbage", "not a chat completion"),
])
def test_llm_failures_fall_back_to_the_extractive_answer(llm_kb, behaviour, note):
    kb, model = llm_kb
    model.behaviour = behaviour
    res = kb.ask("What does kube-proxy do?")
    assert res["mode"] == "extractive" and note in res["mode_note"]
    plain = kb.ask("What does kube-proxy do?", use_llm=False)
    assert res["answer"] == plain["answer"] and res["found"]


def test_llm_unreachable_falls_back(corpus_index):
    kb = KnowledgeBase(make_config(index_dir=corpus_index, llm_url=f"http://127.0.0.1:{free_port()}",
                                   llm_model="tiny", llm_timeout=1.0))
    res = kb.ask("What does kube-proxy do?")
    assert res["mode"] == "extractive" and "unreachable" in res["mode_note"]
    events = list(kb.ask_stream("What does kube-proxy do?"))
    assert events[-1][0] == "done" and events[-1][1]["mode"] == "extractive"
    assert "unreachable" in events[-1][1]["mode_note"]


def test_stream_failure_mid_answer_ends_with_extractive_done(llm_kb):
    kb, model = llm_kb
    model.behaviour = "uncited"
    events = list(kb.ask_stream("etcd 的作用是什么？"))
    assert [e for e, _ in events][0] == "meta" and events[-1][0] == "done"
    done = events[-1][1]
    assert done["mode"] == "extractive" and "cites no passage" in done["mode_note"]
    assert re.search(r"\[\d+\]", done["answer"])


def test_no_llm_for_questions_without_an_answer(llm_kb):
    kb, model = llm_kb
    res = kb.ask("How do I bake a chocolate cake?")
    assert res["found"] is False and res["mode"] == "extractive" and not model.requests
