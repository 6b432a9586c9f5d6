"""Shared fixtures: indexes are built once per test session, never per test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kbqa.config import Config
from kbqa.kb import KnowledgeBase

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DOCS = SHARED / "k8s-docs"
DEV = SHARED / "eval" / "dev.jsonl"
CORPUS = ROOT / "corpus"


def make_config(**kw) -> Config:
    """Config from defaults only: the developer's KBQA_* variables must not leak in."""
    return Config.from_env(env={}, **kw)


@pytest.fixture(scope="session")
def corpus_index(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("index-corpus")
    KnowledgeBase(make_config(index_dir=d, sources=(CORPUS,))).build()
    return d


@pytest.fixture(scope="session")
def kb(corpus_index) -> KnowledgeBase:
    return KnowledgeBase(make_config(index_dir=corpus_index))


@pytest.fixture(scope="session")
def client(kb):
    from kbqa.app import create_app

    return create_app(kb.config, kb=kb).test_client()


@pytest.fixture(scope="session")
def docs_documents():
    from kbqa.ingest import Skipped, iter_documents

    assert DOCS.is_dir(), f"test data missing: {DOCS}"
    skipped: list[Skipped] = []
    docs = list(iter_documents(DOCS, skipped=skipped))
    return docs, skipped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "kbqa.cli", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def server(corpus_index):
    """A real `kbqa serve` process (gunicorn, 2 workers) on a free localhost port."""
    import requests

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
    proc = subprocess.Popen([sys.executable, "-m", "kbqa.cli", "serve", "--port", str(port),
                             "--index-dir", str(corpus_index), "--workers", "2"],
                            cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kbqa serve exited: {proc.stdout.read()}")
        try:
            if requests.get(base + "/api/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("kbqa serve did not come up within 60 s")
    yield base
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def single_language_kbs(tmp_path_factory) -> dict[str, KnowledgeBase]:
    """Our articles indexed one language at a time, for cross-language questions."""
    out = {}
    for lang in ("en", "zh"):
        d = tmp_path_factory.mktemp(f"index-{lang}")
        cfg = make_config(index_dir=d, sources=(CORPUS / lang,))
        KnowledgeBase(cfg).build()
        out[lang] = KnowledgeBase(cfg)
    return out
