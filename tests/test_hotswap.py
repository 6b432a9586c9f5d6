"""A running `kbqa serve` swaps to a new index version under load, with no failed request."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest
import requests

from kbqa.kb import KnowledgeBase
from tests.conftest import CORPUS, ROOT, free_port, make_config, run_cli

QUESTIONS = ["What is etcd?", "etcd 的作用是什么？", "What does the kubelet do?",
             "What does kube-proxy do?", "Which planet is closest to the sun?"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Our own index (a small copy of the corpus) served by a real `kbqa serve`."""
    tmp = tmp_path_factory.mktemp("hotswap")
    src = tmp / "src"
    for rel in ("en/etcd.md", "en/kubelet.md", "zh/etcd.md"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / rel, src / rel)
    idx = tmp / "idx"
    KnowledgeBase(make_config(index_dir=idx, sources=(src,))).build()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
    proc = subprocess.Popen([sys.executable, "-m", "kbqa.cli", "serve", "--port", str(port),
                             "--index-dir", str(idx)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(iter(proc.stdout.readline, "")),
                     daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "".join(log)
        try:
            if requests.get(base + "/api/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "kbqa serve did not come up"
        time.sleep(0.2)
    yield {"base": base, "src": src, "idx": idx, "log": log}
    proc.terminate()
    proc.wait(timeout=15)


def _version(base: str) -> str:
    return requests.get(base + "/api/health", timeout=10).json()["version"]


def _wait_for_version(base: str, version: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _version(base) != version:
        assert time.monotonic() < deadline, f"server never switched to {version}"
        time.sleep(0.2)


def _reindex(served) -> str:
    r = run_cli("index", "--source", str(served["src"]), "--index-dir", str(served["idx"]))
    assert r.returncode == 0, r.stderr
    return (served["idx"] / "CURRENT").read_text().strip()


class Load:
    """Threads asking questions and checking health until stopped; every failure is kept."""

    def __init__(self, base: str, threads: int = 4):
        self.base, self.stop = base, threading.Event()
        self.ok, self.failures, self.versions = 0, [], set()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]

    def _run(self, n: int) -> None:
        session = requests.Session()
        i = n
        while not self.stop.is_set():
            q = QUESTIONS[i % len(QUESTIONS)]
            i += 1
            try:
                r = session.post(self.base + "/api/query", json={"question": q}, timeout=60)
                body = r.json()
                good = r.status_code == 200 and "answer" in body and isinstance(body["passages"], list)
                h = session.get(self.base + "/api/health", timeout=60)
                good = good and h.status_code == 200
                with self.lock:
                    if good:
                        self.ok += 1
                        self.versions.add(h.json()["version"])
                    else:
                        self.failures.append((q, r.status_code, r.text[:200]))
            except Exception as exc:  # a refused connection or bad JSON is a failure too
                with self.lock:
                    self.failures.append((q, type(exc).__name__, str(exc)[:200]))

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)


def test_swap_under_concurrent_queries_fails_no_request(served):
    base, src = served["base"], served["src"]
    v0 = _version(base)
    with Load(base) as load:
        shutil.copy(CORPUS / "en" / "kube-proxy.md", src / "en" / "kube-proxy.md")
        v1 = _reindex(served)
        _wait_for_version(base, v1)
        with open(src / "en" / "etcd.md", "a", encoding="utf-8") as fh:
            fh.write("\netcd answers reads from its in-memory index.\n")
        v2 = _reindex(served)
        _wait_for_version(base, v2)
        seen = load.ok
        while load.ok < seen + 8:  # keep the load on after the last swap
            assert not load.failures
            time.sleep(0.1)
    assert load.failures == []
    assert len({v0, v1, v2}) == 3 and {v0, v2} <= load.versions
    r = requests.post(base + "/api/query", json={"question": "What does kube-proxy do?"}, timeout=30)
    assert r.status_code == 200
    assert any(p["source"] == "en/kube-proxy.md" for p in r.json()["passages"][:3])


def test_damaged_new_version_is_refused_and_the_old_one_keeps_serving(served):
    base, idx, log = served["base"], served["idx"], served["log"]
    # The version on disk, once every worker serves it: right after the swaps of
    # the test before, one worker could still report a version already pruned.
    good = (idx / "CURRENT").read_text().strip()
    deadline, streak = time.monotonic() + 60, 0
    while streak < 10:
        streak = streak + 1 if _version(base) == good else 0
        assert time.monotonic() < deadline, f"workers never all served {good}"
        time.sleep(0.05)
    bad = "v-20991231T235959-000000-1"
    shutil.copytree(idx / good, idx / bad)
    chunks = idx / bad / "chunks.jsonl"
    chunks.write_bytes(chunks.read_bytes()[:200])  # truncated
    tmp = idx / ".CURRENT.test"
    tmp.write_text(bad + "\n")
    os.replace(tmp, idx / "CURRENT")
    deadline = time.monotonic() + 60
    with Load(base, threads=2) as load:
        while not any("not loaded" in line and bad in line for line in log):
            assert time.monotonic() < deadline, "".join(log[-20:])
            time.sleep(0.2)
        seen = load.ok
        while load.ok < seen + 6:  # several more requests, past the next CURRENT checks
            time.sleep(0.1)
    assert load.failures == [] and load.versions == {good}
    # One line per worker process that saw it (gunicorn forks several), never repeated.
    refusals = [line for line in log if "not loaded" in line and bad in line]
    pids = [re.search(r"\(pid (\d+)\)", line).group(1) for line in refusals]
    assert refusals and len(pids) == len(set(pids)), refusals
    assert all("chunks.jsonl" in line and f"still serving {good}" in line for line in refusals)
    assert "Traceback" not in "".join(log)
    # A build repairs it (the damaged current version cannot seed an incremental one).
    r = run_cli("index", "--source", str(served["src"]), "--index-dir", str(idx))
    assert r.returncode == 0 and "full build (the current index is damaged" in r.stdout
    _wait_for_version(base, (idx / "CURRENT").read_text().strip())
