"""The chat page in a real browser (Debian's Chromium driven by Playwright) against a
real `kbqa serve`, the way a person uses it.

Screenshots of the main states go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import CORPUS, ROOT, free_port, make_config, run_cli

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
ARTIFACTS = ROOT / "tests" / "artifacts"
TIMEOUT_MS = 60_000

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run must apt-get install chromium")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does)",
                allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")

# Each payload sets window.__xss (or opens a dialog) if it ever runs.
XSS_PAGE = """---
title: "Pod security admission <img src=x onerror=\\"window.__xss='title'\\">"
---

Pod security admission enforces the Pod Security Standards on every namespace of a \
Kubernetes cluster <script>window.__xss = "script"</script> when a Pod is created.

The pod security admission controller rejects privileged Pods \
<img src=x onerror="window.__xss='img'"> before the API server stores them in etcd.

## Pod security levels <svg onload="window.__xss='svg'"><script>window.__xss='svg-script'</script></svg>

Pod security admission knows three levels: privileged, baseline and restricted. \
<a href="javascript:window.__xss='a'">Read the levels</a> and \
[the guide](javascript:alert('link')) before you label a namespace.

<details open ontoggle="window.__xss='details'">pod security admission</details>
<iframe srcdoc="<script>parent.__xss='iframe'</script>"></iframe>
<form action="javascript:window.__xss='form'"><button>go</button></form>

```html
<script>window.__xss = "code"</script>
<img src=x onerror="alert('code-img')">
```
"""
XSS_QUESTION = ("<img src=x onerror=\"window.__xss='q-img'\"><script>window.__xss='q'</script>"
                " what is pod security admission?")


# --- servers --------------------------------------------------------------------------

class Server:
    """A real `kbqa serve` process on a free localhost port."""

    def __init__(self, index_dir: Path, feedback_db: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.feedback_db = feedback_db
        env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
        env["KBQA_FEEDBACK_DB"] = str(feedback_db)
        # One worker process is enough for one browser and halves the start-up cost
        # (each worker loads the encoders).
        env["KBQA_WORKERS"] = "1"
        # Output to a file, not a pipe nobody reads (a full pipe would stall the server).
        self.log = feedback_db.with_name(f"serve-{self.port}.log")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kbqa.cli", "serve", "--port", str(self.port),
                 "--index-dir", str(index_dir)], cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kbqa serve exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.base + "/api/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("kbqa serve did not come up within 90 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def live(corpus_index, tmp_path_factory):
    srv = Server(corpus_index, tmp_path_factory.mktemp("browser-fb") / "feedback.sqlite3")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def xss_index(tmp_path_factory) -> Path:
    """Our English articles plus one page full of script payloads, as collection `xss`."""
    from kbqa.kb import KnowledgeBase

    src = tmp_path_factory.mktemp("corpora") / "xss"
    (src / "en").mkdir(parents=True)
    for name in ("pods.md", "etcd.md", "kube-apiserver.md"):
        shutil.copy(CORPUS / "en" / name, src / "en" / name)
    (src / "en" / "pod-security.md").write_text(XSS_PAGE, encoding="utf-8")
    d = tmp_path_factory.mktemp("index-xss")
    KnowledgeBase(make_config(index_dir=d, sources=(src,))).build()
    return d


@pytest.fixture(scope="module")
def xss_live(xss_index, tmp_path_factory):
    srv = Server(xss_index, tmp_path_factory.mktemp("xss-fb") / "feedback.sqlite3")
    yield srv
    srv.stop()


# --- browser --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class Tab:
    """One page plus what it did: API requests, dialogs, script errors."""

    def __init__(self, browser, base: str, locale: str = "en-US", width: int = 1100,
                 height: int = 820, bypass_csp: bool = False, **kw):
        self.context = browser.new_context(locale=locale, bypass_csp=bypass_csp,
                                           viewport={"width": width, "height": height}, **kw)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.base = base
        self.requests: list[tuple[str, dict | None]] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", self._on_request)
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _on_request(self, req) -> None:
        if "/api/" in req.url and req.method == "POST":
            body = req.post_data
            self.requests.append((req.url.split(self.base, 1)[-1],
                                  json.loads(body) if body else None))

    def open(self, path: str = "/") -> "Tab":
        self.page.goto(self.base + path)
        self.page.wait_for_selector("#question")
        return self

    def turns(self, kind: str) -> int:
        return self.page.locator(f"#thread .turn.{kind}:not(.draft)").count()

    def ask(self, question: str, expect: str = "answer") -> None:
        """Type the question and press Enter; wait for its answer (or error)."""
        before = self.turns(expect)
        self.page.fill("#question", question)
        self.page.press("#question", "Enter")
        self.page.wait_for_function(
            "([sel, n]) => document.querySelectorAll(sel).length > n && "
            "!document.getElementById('question').disabled",
            arg=[f"#thread .turn.{expect}:not(.draft)", before])

    def last(self, kind: str = "answer"):
        return self.page.locator(f"#thread .turn.{kind}:not(.draft)").last

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def xss_flag(self):
        return self.page.evaluate("() => window.__xss")

    def close(self) -> None:
        self.context.close()


@pytest.fixture()
def tab(browser, live):
    t = Tab(browser, live.base).open()
    yield t
    assert not t.errors, f"script errors in the page: {t.errors}"
    t.close()


def serious_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(n["target"][0] if isinstance(n["target"][0], str) else str(n["target"])
                        for n in v["nodes"][:3])
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


# --- scenarios ------------------------------------------------------------------------

def test_empty_state_offers_examples_in_both_languages_and_passes_axe(tab):
    page = tab.page
    assert page.locator("#empty").is_visible()
    zh = page.locator("#examples-zh button.example")
    en = page.locator("#examples-en button.example")
    assert zh.count() >= 2 and en.count() >= 2
    assert "的" in zh.first.inner_text() and en.first.inner_text().startswith("What")
    tab.shot("01-empty-state")
    assert serious_violations(page) == []
    # Clicking an example asks it.
    en.first.click()
    page.wait_for_selector("#thread .turn.answer:not(.draft)")
    assert tab.last("question").inner_text() == en.first.get_attribute("data-question")


def test_chinese_and_english_questions_get_cited_answers_and_sources_open(tab, live):
    page = tab.page
    tab.ask("etcd 的作用是什么？")
    answer = tab.last()
    body = answer.locator(".answer-body")
    assert body.get_attribute("lang") == "zh-CN"
    assert "etcd" in body.inner_text()
    cites = answer.locator("a.cite")
    assert cites.count() >= 1
    cards = answer.locator("li.source")
    assert cards.count() >= 1
    first = cards.first
    for part in (".source-title", ".lang-badge", ".source-snippet", "a.source-link"):
        assert first.locator(part).count() == 1, part
    # The question's terms are highlighted in the snippets.
    assert answer.locator(".source-snippet mark.term").count() >= 1
    assert "etcd" in answer.locator(".source-snippet mark.term").first.inner_text().lower()
    tab.shot("02-answer-zh")

    # The citation leads to its source card...
    cite = cites.first
    n = cite.get_attribute("data-n")
    cite.click()
    card = answer.locator(f"li.source >> nth={int(n) - 1}")
    page.wait_for_function("id => document.activeElement && document.activeElement.id === id",
                           arg=card.get_attribute("id"))
    assert card.is_visible()
    # ...and opening the source shows the whole passage.
    full = card.locator(".source-full")
    assert full.is_hidden()
    card.locator("button.toggle").click()
    assert full.is_visible() and card.locator("button.toggle").get_attribute(
        "aria-expanded") == "true"
    api = requests.post(live.base + "/api/query", json={"question": "etcd 的作用是什么？"},
                        timeout=60).json()
    expected = api["passages"][int(n) - 1]["text"]
    assert " ".join(full.inner_text().split()) == " ".join(expected.split())
    tab.shot("03-source-opened")

    tab.ask("What does kube-proxy do?")
    en = tab.last()
    assert en.locator(".answer-body").get_attribute("lang") == "en"
    assert "kube-proxy" in en.locator(".answer-body").inner_text()
    assert en.locator("a.cite").count() >= 1
    assert any("kube-proxy" in s for s in en.locator("li.source .source-path").all_inner_texts())
    tab.shot("04-answer-en")
    assert serious_violations(page) == []

    # The page used the streaming endpoint, and the full passage is what the API returned.
    used = [path for path, _ in tab.requests]
    assert used.count("/api/query/stream") == 2 and "/api/query" not in used


def test_page_falls_back_to_plain_query_without_the_stream_endpoint(browser, live):
    t = Tab(browser, live.base)
    t.page.route("**/api/query/stream", lambda route: route.fulfill(
        status=404, content_type="application/json",
        body='{"error": {"code": "not_found", "message": "no such endpoint or file"}}'))
    t.open()
    t.ask("What is a Pod?")
    assert [p for p, _ in t.requests] == ["/api/query/stream", "/api/query"]
    assert t.last().locator("a.cite").count() >= 1
    t.ask("What is etcd?")  # remembered: straight to /api/query
    assert [p for p, _ in t.requests][2:] == ["/api/query"]
    t.close()


def test_follow_up_sends_history_and_is_searched_with_its_topic(tab):
    tab.ask("What is kubeadm?")
    first_answer = tab.last().locator(".answer-body").inner_text()
    tab.ask("How do I install it?")
    path, body = tab.requests[-1]
    assert body["question"] == "How do I install it?"
    assert body["history"][-1]["question"] == "What is kubeadm?"
    assert "kubeadm" in body["history"][-1]["answer"] and "kubeadm" in first_answer
    meta = tab.last().locator(".meta").inner_text()
    assert "kubeadm" in meta.lower(), f"searched query not shown: {meta}"
    assert "install" in tab.last().locator(".answer-body").inner_text().lower()


def test_enter_sends_shift_enter_adds_a_line_and_box_is_busy_meanwhile(tab):
    page = tab.page
    page.evaluate("""() => {
      window.__busy = [];
      const q = document.getElementById('question');
      const thinking = document.getElementById('thinking');
      new MutationObserver(() => window.__busy.push([q.disabled, !thinking.hidden]))
        .observe(q, {attributes: true, attributeFilter: ['disabled']});
    }""")
    page.click("#question")
    page.keyboard.type("What does the kubelet do")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("on a node?")
    assert page.input_value("#question") == "What does the kubelet do\non a node?"
    assert tab.requests == [] and tab.turns("question") == 0
    page.keyboard.press("Enter")
    page.wait_for_selector("#thread .turn.answer:not(.draft)")
    assert tab.last("question").inner_text() == "What does the kubelet do\non a node?"
    assert page.input_value("#question") == ""
    busy = page.evaluate("() => window.__busy")
    assert [True, True] in busy, f"never disabled with the thinking state: {busy}"
    assert busy[-1] == [False, False]


def test_server_error_is_shown_readably(tab):
    tab.ask("x" * 2001, expect="error")
    err = tab.last("error")
    assert "longer than 2000 characters" in err.inner_text()
    assert "question_too_long" in err.inner_text()
    assert err.locator("button.retry").is_visible()


def test_feedback_with_comment_is_stored(tab, live):
    page = tab.page
    tab.ask("kube-scheduler 如何选择节点？")
    answer = tab.last()
    answer_text = answer.locator(".answer-body").inner_text()
    # Keyboard: focus 👎 and press Enter, type a comment, send.
    answer.locator("button.rate-down").focus()
    page.keyboard.press("Enter")
    assert answer.locator("button.rate-down").get_attribute("aria-pressed") == "true"
    comment = answer.locator("textarea.feedback-comment")
    assert comment.is_visible()
    page.keyboard.type("缺少打分阶段的例子 / missing an example of scoring")
    tab.shot("05-feedback")
    answer.locator("button.feedback-send").click()
    answer.locator(".feedback-done").wait_for()
    assert "not helpful" in answer.locator(".feedback-done").inner_text()

    from kbqa.feedback import FeedbackStore

    recs = [r for r in FeedbackStore(live.feedback_db).records()
            if r["question"] == "kube-scheduler 如何选择节点？"]
    assert len(recs) == 1
    rec = recs[0]
    assert rec["rating"] == "down" and rec["comment"].startswith("缺少打分阶段")
    assert rec["lang"] == "zh" and rec["passages"] and rec["passages"][0]["source"]
    api = requests.post(live.base + "/api/query", json={"question": "kube-scheduler 如何选择节点？"},
                        timeout=60).json()
    assert rec["answer"] == api["answer"] and "[1]" in rec["answer"]
    assert [p["id"] for p in rec["passages"]] == [p["id"] for p in api["passages"]]
    assert "kube-scheduler" in answer_text
    out = run_cli("feedback", "export", env={"KBQA_FEEDBACK_DB": str(live.feedback_db)})
    assert out.returncode == 0 and "缺少打分阶段" in out.stdout

    # Given feedback survives a reload and is not asked again.
    page.reload()
    page.wait_for_selector("#thread .feedback-done")
    assert tab.last().locator("button.rate").count() == 0

    # 👍 without a comment on the next answer.
    tab.ask("What is a Pod?")
    tab.last().locator("button.rate-up").click()
    tab.last().locator("button.feedback-send").click()
    tab.last().locator(".feedback-done").wait_for()
    recs = [r for r in FeedbackStore(live.feedback_db).records()
            if r["question"] == "What is a Pod?"]
    assert recs[-1]["rating"] == "up" and recs[-1]["comment"] == ""


def test_copy_button_copies_a_code_block(browser, live):
    t = Tab(browser, live.base, permissions=["clipboard-read", "clipboard-write"]).open()
    t.ask("How do I install kubeadm, kubelet and kubectl?")
    pre = t.last().locator(".code-wrap pre").first
    expected = pre.inner_text().rstrip("\n")
    t.last().locator(".code-wrap button.copy").first.click()
    t.page.wait_for_function("() => document.querySelector('button.copy.copied')")
    assert t.page.evaluate("() => navigator.clipboard.readText()") == expected
    assert not t.errors
    t.close()


def test_phone_width_has_no_horizontal_scroll(browser, live):
    t = Tab(browser, live.base, width=375, height=740, is_mobile=True, has_touch=True).open()
    t.shot("06-phone-empty")
    assert t.page.locator("#empty-title").is_visible() and t.page.evaluate(
        "document.getElementById('scroller').scrollTop") == 0, "the empty state opens at its title"
    overflow = ("() => [document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth,"
                " document.getElementById('scroller').scrollWidth -"
                " document.getElementById('scroller').clientWidth]")
    assert t.page.evaluate(overflow) == [0, 0]
    t.ask("如何用 kubeadm 安装集群？")
    t.ask("What is the difference between the control plane and the data plane?")
    t.last().locator("button.rate-up").click()
    assert t.page.evaluate(overflow) == [0, 0]
    # Nothing but code blocks and tables (which scroll inside) is wider than the screen.
    wide = t.page.evaluate("""() => [...document.querySelectorAll('body *')].filter(e => {
        const r = e.getBoundingClientRect();
        return r.width > 0 && r.right > window.innerWidth + 1 && !e.closest('pre, table');
      }).map(e => e.tagName + '.' + e.className)""")
    assert wide == []
    t.page.locator("#thread .turn.answer:not(.draft) .source-list").first.scroll_into_view_if_needed()
    t.shot("07-phone-answer")
    assert serious_violations(t.page) == []
    t.close()


def test_interface_language_follows_browser_switches_and_is_remembered(browser, live):
    t = Tab(browser, live.base, locale="zh-CN").open()
    page = t.page
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.inner_text("#send") == "发送"
    page.click("#lang-toggle")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.inner_text("#send") == "Send"
    page.reload()
    page.wait_for_selector("#question")
    assert page.inner_text("#send") == "Send", "the choice survives a reload"
    # The answer follows the question's language, whatever the interface language.
    t.ask("kubelet 的作用是什么？")
    assert t.last().locator(".answer-body").get_attribute("lang") == "zh-CN"
    t.close()
    t = Tab(browser, live.base, locale="en-US").open()
    assert t.page.inner_text("#send") == "Send"
    t.close()


def test_thread_survives_reload_and_can_be_cleared(tab):
    page = tab.page
    tab.ask("What is etcd?")
    tab.ask("kube-apiserver 是什么？")
    before = page.locator("#thread").inner_text()
    page.reload()
    page.wait_for_selector("#thread .turn.answer")
    assert tab.turns("answer") == 2 and tab.turns("question") == 2
    assert page.locator("#thread").inner_text() == before
    assert page.locator("#empty").is_hidden()
    # Citations still lead to their sources after the reload.
    tab.last().locator("a.cite").first.click()
    page.wait_for_function("() => document.activeElement.classList.contains('source')")
    page.click("#clear")
    assert tab.turns("answer") == 0 and page.locator("#empty").is_visible()
    page.reload()
    page.wait_for_selector("#question")
    assert tab.turns("answer") == 0 and page.locator("#empty").is_visible()


def test_xss_in_corpus_and_question_shows_as_text_and_never_runs(browser, xss_live):
    # CSP is bypassed so that the sanitisers alone are under test, not the CSP header.
    t = Tab(browser, xss_live.base, bypass_csp=True).open()
    page = t.page
    t.ask("What does pod security admission enforce?")
    answer = t.last()
    assert "pod-security.md" in " ".join(answer.locator(".source-path").all_inner_texts())
    for toggle in answer.locator("button.toggle").all():
        toggle.click()
    shown = answer.locator("li.source").all_inner_texts()
    assert any("<script>" in s for s in shown), "the payload is shown as text"
    t.ask(XSS_QUESTION)
    assert t.last("question").inner_text() == XSS_QUESTION
    t.shot("08-xss")
    thread_html_checks = page.evaluate("""() => {
      const t = document.getElementById('thread');
      return {
        scripts: t.querySelectorAll(
          'script, iframe, object, embed, svg, math, style, form:not(.feedback-form)').length,
        handlers: [...t.querySelectorAll('*')].filter(e =>
          [...e.attributes].some(a => a.name.startsWith('on'))).length,
        jsLinks: [...t.querySelectorAll('a[href]')].filter(a =>
          a.href.trim().toLowerCase().startsWith('javascript:')).length,
      };
    }""")
    assert thread_html_checks == {"scripts": 0, "handlers": 0, "jsLinks": 0}
    # The cited article page itself renders the same page safely.
    href = answer.locator("a.source-link").first.get_attribute("href")
    page.goto(href if href.startswith("http") else xss_live.base + href)
    page.wait_for_load_state("load")
    assert "Pod security admission" in page.inner_text("body")
    page.reload()
    page.wait_for_timeout(300)  # let any onload/onerror/ontoggle handler fire if present
    assert t.xss_flag() is None and t.dialogs == []
    page.goto(xss_live.base + "/")
    page.wait_for_selector("#thread .turn.answer")  # the stored thread replays safely
    page.wait_for_timeout(300)
    assert t.xss_flag() is None and t.dialogs == [] and t.errors == []
    t.close()


def test_stopped_server_gives_a_readable_error(browser, xss_index, tmp_path):
    srv = Server(xss_index, tmp_path / "fb.sqlite3")
    try:
        t = Tab(browser, srv.base).open()
        t.ask("What is a Pod?")
        srv.stop()
        t.ask("And what is etcd?", expect="error")
        err = t.last("error")
        assert "Cannot reach the server" in err.inner_text()
        assert err.locator("button.retry").is_visible()
        assert t.turns("answer") == 1, "the earlier answer stays"
        assert t.page.inner_text("#status") == "Server unreachable"
        t.shot("09-server-stopped")
        t.close()
    finally:
        srv.stop()


def test_api_reference_page_renders(browser, live):
    t = Tab(browser, live.base)
    t.page.goto(live.base + "/api/docs")
    assert t.page.locator("section.op").count() >= 8
    assert t.page.locator("#op-query").is_visible()
    t.page.screenshot(path=str(ARTIFACTS / "10-api-docs.png"), full_page=True)
    assert serious_violations(t.page) == []
    t.close()
