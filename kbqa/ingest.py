"""Ingest: turn Markdown files (our articles, Hugo pages of the Kubernetes docs)
into clean Markdown plus metadata.

Hugo pages are written for a site generator, not for readers of raw text:
shortcodes, HTML comments (zh-cn pages keep the English original inside them)
and link targets would pollute both the lexical and the dense index. Cleaning
is a pure function of the page text; reading files happens only in
``iter_documents``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import frontmatter
import yaml

log = logging.getLogger(__name__)

LANG_FOLDERS = {"en": "en", "zh": "zh", "zh-cn": "zh", "zh_cn": "zh", "zh-hans": "zh"}
MAX_FILE_BYTES = 20 * 1024 * 1024

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_COMMENT = re.compile(r"<!--.*?(-->|\Z)", re.S)
_SHORTCODE = re.compile(r"\{\{([<%])\s*(/?)\s*([\w.-]+)(.*?)\s*[>%]\}\}", re.S)
_ARG = re.compile(r"""([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+))""")
_POS_ARG = re.compile(r"""\s*(?:"([^"]*)"|(\S+))""")
_IMAGE = re.compile(r"!\[([^\]]*)\]\((?:[^()]|\([^)]*\))*\)")
_LINK = re.compile(r"\[([^\]]+)\]\((?:[^()]|\([^)]*\))*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+\S+.*$", re.M)
_AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")
_HTML_TAG = re.compile(
    r"</?(?:a|abbr|b|blockquote|br|center|code|details|div|em|figcaption|figure|font|"
    r"h[1-6]|hr|i|iframe|img|kbd|li|nobr|ol|p|pre|section|small|span|strong|sub|summary|"
    r"sup|table|tbody|td|th|thead|tr|u|ul)\b[^>]*/?>",
    re.I,
)
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")

# Hugo's {{% heading "x" %}} renders a localised section title.
_HEADINGS = {
    "en": {"prerequisites": "Before you begin", "whatsnext": "What's next",
           "objectives": "Objectives", "cleanup": "Cleaning up", "synopsis": "Synopsis",
           "options": "Options", "seealso": "See also", "tutorials": "Tutorials"},
    "zh": {"prerequisites": "准备开始", "whatsnext": "接下来", "objectives": "教程目标",
           "cleanup": "清理", "synopsis": "概要", "options": "选项", "seealso": "参见",
           "tutorials": "教程"},
}
# Paired shortcodes whose content is dropped with them.
_DROP_WITH_CONTENT = {"comment"}


class IngestError(ValueError):
    """A page that cannot be used; the message says why."""


@dataclass
class Document:
    collection: str  # name of the source folder, keeps two sources apart
    source: str  # path relative to the source folder, POSIX style
    lang: str  # "zh" | "en"
    title: str
    body: str  # cleaned Markdown
    meta: dict = field(default_factory=dict)
    sha256: str = ""

    @property
    def doc_id(self) -> str:
        return f"{self.collection}:{self.source}"


def _args(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in _ARG.finditer(raw):
        out[m.group(1)] = next(g for g in m.groups()[1:] if g is not None)
    if not out:
        pos = [next((g for g in m.groups() if g is not None), "") for m in _POS_ARG.finditer(raw)]
        for i, v in enumerate(p for p in pos if p):
            out[str(i)] = v
    return out


def clean_hugo(text: str, lang: str = "en",
               glossary: Callable[[str], str | None] | None = None) -> tuple[str, dict]:
    """Remove Hugo markup from a page body; return (markdown, metadata).

    glossary_tooltip keeps its text, note/warning/caution keep their content,
    feature-state becomes metadata, everything else disappears cleanly.
    """
    meta: dict = {}
    text = _COMMENT.sub("", text)
    # Drop paired shortcodes whose content is not for readers.
    for name in _DROP_WITH_CONTENT:
        text = re.sub(r"\{\{[<%]\s*" + name + r"\b.*?[>%]\}\}.*?\{\{[<%]\s*/\s*" + name
                      + r"\s*[>%]\}\}", "", text, flags=re.S)

    def repl(m: re.Match) -> str:
        closing, name, args = m.group(2), m.group(3).lower(), _args(m.group(4))
        if closing:
            return ""
        if name == "glossary_tooltip":
            return args.get("text") or args.get("term_id", "").replace("-", " ")
        if name == "glossary_definition" and glossary:
            return glossary(args.get("term_id", "")) or ""
        if name == "feature-state":
            meta.setdefault("feature_state", []).append(
                {k: v for k, v in args.items() if k in ("for_k8s_version", "state")})
            return ""
        if name in ("heading", "whatsnext-heading", "prerequisites-heading"):
            key = args.get("0", name.split("-")[0])
            return _HEADINGS.get(lang, _HEADINGS["en"]).get(key, key)
        if name == "tab" and args.get("name"):
            return f"\n**{args['name']}**\n"
        if name == "link" and args.get("text"):
            return args["text"]
        return ""

    # Shortcodes can nest in their arguments; a few passes settle them.
    for _ in range(3):
        new = _SHORTCODE.sub(repl, text)
        if new == text:
            break
        text = new
    text = text.replace("{{<", "").replace("{{%", "").replace(">}}", "").replace("%}}", "")
    return _clean_markdown(text), meta


def _clean_markdown(text: str) -> str:
    """Links to their text and HTML tags away, outside code blocks only."""
    out: list[str] = []
    prose: list[str] = []
    fence: str | None = None

    def flush() -> None:
        if prose:
            chunk = "\n".join(prose)
            chunk = _REF_DEF.sub("", chunk)
            chunk = _IMAGE.sub(lambda m: m.group(1), chunk)
            chunk = _LINK.sub(lambda m: m.group(1), chunk)
            chunk = _REF_LINK.sub(lambda m: m.group(1), chunk)
            chunk = _AUTOLINK.sub(lambda m: m.group(1), chunk)
            chunk = re.sub(r"<br\s*/?>", " ", chunk, flags=re.I)
            chunk = _HTML_TAG.sub("", chunk)
            out.append(chunk)
            prose.clear()

    for line in text.split("\n"):
        m = _FENCE.match(line)
        if fence is None:
            if m:
                flush()
                fence = m.group(1)[0] * len(m.group(1))
                out.append(line)
            else:
                prose.append(line)
        else:
            out.append(line)
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
    flush()
    if fence is not None:  # unclosed fence: close it so Markdown stays valid
        out.append(fence)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n"


def detect_lang(text: str) -> str:
    """Chinese when CJK characters make up a noticeable share of the letters."""
    sample = text[:5000]
    cjk = len(_CJK.findall(sample))
    latin = len(re.findall(r"[A-Za-z]", sample))
    return "zh" if cjk and cjk * 3 >= latin * 0.5 else "en"


def lang_from_path(rel: str) -> str | None:
    for part in Path(rel).parts[:-1]:
        if part.lower() in LANG_FOLDERS:
            return LANG_FOLDERS[part.lower()]
    return None


def parse_page(raw: bytes, collection: str, source: str,
               glossary: Callable[[str, str], str | None] | None = None) -> Document:
    """Parse one Markdown page; raises IngestError with a reason if unusable."""
    if len(raw) > MAX_FILE_BYTES:
        raise IngestError(f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    if b"\x00" in raw[:8192]:
        raise IngestError("binary file (NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"not valid UTF-8 (byte {exc.start})") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        post = frontmatter.loads(text)
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IngestError(f"bad front matter: {reason}") from None
    fm = post.metadata if isinstance(post.metadata, dict) else {}
    lang = lang_from_path(source)
    if lang is None and isinstance(fm.get("lang"), str):
        lang = LANG_FOLDERS.get(fm["lang"].lower().strip())
    body_raw = post.content
    if lang is None:
        lang = detect_lang(_COMMENT.sub("", body_raw))
    lookup = (lambda term: glossary(lang, term)) if glossary else None
    body, meta = clean_hugo(body_raw, lang, lookup)
    title = fm.get("title")
    if not isinstance(title, str) or not title.strip():
        h1 = re.search(r"^#\s+(.+)$", body, re.M)
        title = h1.group(1).strip() if h1 else Path(source).stem.replace("-", " ")
    title = clean_hugo(str(title), lang)[0].strip()
    if not body.strip():
        desc = fm.get("short_description") or fm.get("description")
        if isinstance(desc, str) and desc.strip():
            body = desc.strip() + "\n"
    if not body.strip():
        raise IngestError("no text after removing markup")
    for key in ("id", "tags", "description", "content_type", "short_description"):
        if key in fm and isinstance(fm[key], (str, list)):
            meta[key] = fm[key]
    return Document(collection=collection, source=source, lang=lang, title=title,
                    body=body, meta=meta, sha256=hashlib.sha256(raw).hexdigest())


class GlossaryResolver:
    """Resolves ``glossary_definition term_id=x`` from the source's own glossary pages."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[tuple[str, str], str | None] = {}

    def __call__(self, lang: str, term: str) -> str | None:
        key = (lang, term)
        if key not in self._cache:
            self._cache[key] = self._lookup(lang, term)
        return self._cache[key]

    def _lookup(self, lang: str, term: str) -> str | None:
        if not re.fullmatch(r"[\w.-]+", term or ""):
            return None
        folders = [d for d, code in LANG_FOLDERS.items() if code == lang]
        for folder in folders:
            page = self.root / folder / "reference" / "glossary" / f"{term}.md"
            if page.is_file():
                try:
                    post = frontmatter.loads(page.read_text("utf-8"))
                except Exception:  # a broken glossary page only loses the tooltip
                    return None
                desc = post.metadata.get("short_description")
                if isinstance(desc, str):
                    return clean_hugo(desc, lang)[0].strip()
        return None


@dataclass
class Skipped:
    source: str
    reason: str


def list_files(root: Path) -> list[Path]:
    """Markdown files under a source folder, sorted for reproducible builds."""
    # A README at the top of a source describes the folder, it is not a page.
    return sorted(p for p in root.rglob("*.md")
                  if p.is_file() and p.relative_to(root).as_posix().lower() != "readme.md"
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def iter_documents(root: Path, collection: str | None = None,
                   skipped: list[Skipped] | None = None) -> Iterator[Document]:
    """Yield the pages of one source folder; unusable pages are logged and listed."""
    root = Path(root)
    collection = collection or root.resolve().name
    resolver = GlossaryResolver(root)
    for path in list_files(root):
        rel = path.relative_to(root).as_posix()
        try:
            yield parse_page(path.read_bytes(), collection, rel, resolver)
        except (IngestError, OSError) as exc:
            log.warning("skipped %s: %s", path, exc)
            if skipped is not None:
                skipped.append(Skipped(rel, str(exc)))
