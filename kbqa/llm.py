"""Optional language model: an OpenAI-compatible ``/v1/chat/completions`` endpoint.

kbqa works without one (extractive answers). When ``KBQA_LLM_URL`` and
``KBQA_LLM_MODEL`` are set (Ollama, vLLM, llama.cpp server, ...), the answer is
generated from the retrieved passages only, with ``[n]`` citations, in the
asker's language. Any failure (unreachable, slow, HTTP error, no citation)
raises ``LLMError`` and the caller falls back to the extractive answer.
"""

from __future__ import annotations

import json
import re
import time
from typing import Iterator

import requests

from kbqa.segment import Chunk

SYSTEM = {
    "zh": ("你是 Kubernetes 知识库助手。只根据下面编号的资料回答，用简体中文作答。"
           "每句话末尾用 [n] 标注所依据的资料编号；资料中没有的内容不要写。回答简洁，可使用 Markdown。"),
    "en": ("You are the assistant of a Kubernetes knowledge base. Answer only from the numbered "
           "passages below, in English. End every sentence with [n], the number of the passage it "
           "comes from; leave out anything the passages do not say. Be concise; Markdown is allowed."),
}
MAX_PASSAGE_CHARS = 1500


class LLMError(RuntimeError):
    """The model could not give a usable answer; the message says why, briefly."""


def endpoint(url: str) -> str:
    """Accept a base URL (http://host:11434 or .../v1) or the full completions URL."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if not url.endswith("/v1"):
        url += "/v1"
    return url + "/chat/completions"


def build_messages(question: str, lang: str, passages: list[Chunk],
                   history: list[dict] | None = None) -> list[dict]:
    sources = "\n\n".join(
        f"[{i}] {c.title}{' > ' + c.heading if c.heading else ''}\n{c.text[:MAX_PASSAGE_CHARS]}"
        for i, c in enumerate(passages, 1))
    messages = [{"role": "system", "content": SYSTEM[lang] + "\n\n" + sources}]
    for turn in (history or [])[-4:]:
        messages.append({"role": "user", "content": str(turn.get("question", ""))})
        if turn.get("answer"):
            messages.append({"role": "assistant", "content": str(turn["answer"])})
    messages.append({"role": "user", "content": question})
    return messages


def check_citations(text: str, n_passages: int) -> str:
    """Drop citations of passages that do not exist; no valid citation is an error."""
    def keep(m: re.Match) -> str:
        return m.group(0) if 1 <= int(m.group(1)) <= n_passages else ""
    cleaned = re.sub(r"\[(\d+)\]", keep, text).strip()
    if not re.search(r"\[\d+\]", cleaned):
        raise LLMError("the language model's answer cites no passage")
    return cleaned


class LLMClient:
    def __init__(self, url: str, model: str, timeout: float = 30.0, api_key: str | None = None):
        self.url = endpoint(url)
        self.model = model
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def _post(self, messages: list[dict], stream: bool) -> requests.Response:
        body = {"model": self.model, "messages": messages, "stream": stream, "temperature": 0.2}
        try:
            resp = requests.post(self.url, json=body, headers=self.headers, stream=stream,
                                 timeout=(min(5.0, self.timeout), self.timeout))
        except requests.Timeout:
            raise LLMError(f"the language model did not answer within {self.timeout:g} s") from None
        except requests.RequestException as exc:
            raise LLMError(f"the language model at {self.url} is unreachable "
                           f"({type(exc).__name__})") from None
        if resp.status_code != 200:
            resp.close()
            raise LLMError(f"the language model answered HTTP {resp.status_code}")
        return resp

    def complete(self, messages: list[dict]) -> str:
        resp = self._post(messages, stream=False)
        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError("the language model's reply is not a chat completion") from None
        if not isinstance(text, str) or not text.strip():
            raise LLMError("the language model gave an empty answer")
        return text.strip()

    def stream(self, messages: list[dict]) -> Iterator[str]:
        """Text deltas as the model produces them (Server-Sent Events)."""
        resp = self._post(messages, stream=True)
        deadline = time.monotonic() + self.timeout
        got = False
        try:
            for raw in resp.iter_lines(decode_unicode=False):
                if time.monotonic() > deadline:
                    raise LLMError(f"the language model did not finish within {self.timeout:g} s")
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    delta = json.loads(payload)["choices"][0].get("delta", {}).get("content")
                except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                    raise LLMError("the language model's stream is not a chat completion") from None
                if delta:
                    got = True
                    yield delta
        except requests.RequestException as exc:
            raise LLMError(f"the language model's stream broke off ({type(exc).__name__})") from None
        finally:
            resp.close()
        if not got:
            raise LLMError("the language model gave an empty answer")
