"""The ``kbqa`` command: a thin shell over KnowledgeBase.

Errors end in one line on stderr saying what was wrong and how to fix it, and
a non-zero exit code; never a stack trace.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import click

from kbqa.config import Config

EXIT_USAGE = 2
EXIT_ERROR = 1


def _fail(message: str, code: int = EXIT_ERROR) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _config(index_dir: str | None, **overrides) -> Config:
    try:
        return Config.from_env(index_dir=Path(index_dir) if index_dir else None, **overrides)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)


def _kb(cfg: Config):
    from kbqa.index import IndexError_
    from kbqa.kb import KnowledgeBase

    kb = KnowledgeBase(cfg)
    try:
        kb.index  # load now, so a missing index is reported before any work
    except IndexError_ as exc:
        _fail(str(exc))
    return kb


@click.group()
@click.version_option(package_name="kbqa")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def main(verbose: bool) -> None:
    """kbqa: ask a bilingual Kubernetes knowledge base, build its index, serve it."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--source", "sources", multiple=True, type=click.Path(file_okay=False),
              help="Folder of Markdown files (repeatable). Default: corpus/.")
@click.option("--index-dir", type=click.Path(file_okay=False), help="Default: index/.")
@click.option("--encoder", "encoders", multiple=True,
              help="Dense encoder to store (repeatable): use, minilm, or a model path.")
@click.option("--if-stale", is_flag=True,
              help="Build only when the index is missing or older than a source file.")
@click.option("--full", is_flag=True,
              help="Rebuild from scratch instead of reusing the unchanged files' chunks and vectors.")
def index(sources, index_dir, encoders, if_stale, full) -> None:
    """Update the index from the source folders: only new and changed files are processed.

    Atomic (the old version serves until the new one is complete) and locked
    (one build per index folder). A changed encoder or chunker setting forces
    a full rebuild, and says so.
    """
    from kbqa.index import is_stale
    from kbqa.kb import KnowledgeBase

    cfg = _config(index_dir, sources=tuple(sources) or None, encoders=tuple(encoders) or None)
    for src in cfg.sources:
        if not Path(src).is_dir():
            _fail(f"source folder {src} does not exist; pass --source DIR with Markdown files",
                  EXIT_USAGE)
    if if_stale and not is_stale(cfg):
        click.echo(f"index in {cfg.index_dir}/ is up to date")
        return
    logging.getLogger("kbqa.ingest").setLevel(logging.WARNING)
    _build(KnowledgeBase(cfg), None, full)


def _write_reason(message: str) -> str:
    m = re.search(r"\(([^()]*)\)\s*$", message)
    return m.group(1) if m else message.splitlines()[0][:120]


def _build(kb, sources, full: bool):
    """Run a build with a progress display fit for where stderr goes; print its summary."""
    from kbqa.embed import EmbedderError
    from kbqa.index import IndexError_, LogProgress, TqdmProgress

    progress = TqdmProgress() if sys.stderr.isatty() else LogProgress()
    try:
        report = kb.build(sources, full=full, progress=progress)
    except (IndexError_, EmbedderError) as exc:
        progress.end()
        _fail(str(exc))
    except (OSError, RuntimeError) as exc:
        # Disk full, read-only folder, quota (faiss reports its write errors as
        # RuntimeError): the new version is abandoned, the previous one serves on.
        progress.end()
        reason = getattr(exc, "strerror", None) or _write_reason(str(exc))
        _fail(f"cannot write the index in {kb.config.index_dir} ({reason}); free some space or "
              "fix the folder's permissions and run kbqa index again (the previous index is "
              "still the one served)")
    for s in report.skipped:
        click.echo(f"skipped {s.source}: {s.reason}", err=True)
    click.echo(report.summary())
    return report


@main.command("sync-docs")
@click.option("--repo", default=None, help="Git URL or folder of the website repository. "
              "Default: https://github.com/kubernetes/website.")
@click.option("--ref", default="main", show_default=True, help="Branch, tag or commit.")
@click.option("--lang", "langs", multiple=True,
              help="Language folder under content/ (repeatable). Default: en and zh-cn.")
@click.option("--dest", type=click.Path(file_okay=False),
              help="Where the checkout lives. Default: <index-dir>/sources/kubernetes-website.")
@click.option("--source", "sources", multiple=True, type=click.Path(file_okay=False),
              help="Other folders indexed with the docs (repeatable). Default: the current "
                   "index's other sources, or corpus/ when there is no index.")
@click.option("--index-dir", type=click.Path(file_okay=False), help="Default: index/.")
@click.option("--full", is_flag=True, help="Rebuild the index from scratch after the sync.")
def sync_docs_cmd(repo, ref, langs, dest, sources, index_dir, full) -> None:
    """Fetch the official docs (shallow, sparse git) and index them incrementally."""
    from kbqa.kb import KnowledgeBase
    from kbqa.sync import DEFAULT_REPO, SyncError, default_dest, sync_docs

    cfg = _config(index_dir)
    for src in sources:
        if not Path(src).is_dir():
            _fail(f"source folder {src} does not exist; pass --source DIR with Markdown files",
                  EXIT_USAGE)
    dest = Path(dest) if dest else default_dest(cfg.index_dir)
    try:
        result = sync_docs(repo or DEFAULT_REPO, ref, tuple(langs), dest)
    except SyncError as exc:
        _fail(str(exc))
    click.echo(result.summary(), err=True)
    docs = result.docs_dir.resolve()
    if sources:
        others = [Path(s) for s in sources]
    else:
        others = [Path(s) for s in cfg.sources]
        try:
            from kbqa.index import current_version

            manifest = json.loads((current_version(cfg.index_dir) / "manifest.json").read_text())
            others = [Path(s["path"]) for s in manifest["sources"]]
        except Exception:  # no index (or an unreadable one): the configured sources
            pass
        others = [s for s in others if s.is_dir() and s.resolve() != docs]
    _build(KnowledgeBase(cfg), [*others, docs], full)


@main.command()
@click.argument("question")
@click.option("--index-dir", type=click.Path(file_okay=False))
@click.option("--top-k", type=int, default=None, help="Passages to return (1-50, default 5).")
@click.option("--json", "as_json", is_flag=True, help="Print the full JSON response.")
def ask(question, index_dir, top_k, as_json) -> None:
    """Ask one question and print the cited answer."""
    from kbqa.kb import QueryError

    kb = _kb(_config(index_dir))
    try:
        res = kb.ask(question, top_k)
    except QueryError as exc:
        _fail(str(exc), EXIT_USAGE)
    if as_json:
        res.pop("answer_html", None)
        click.echo(json.dumps(res, ensure_ascii=False, indent=2))
        return
    click.echo(res["answer"])
    if res["passages"]:
        click.echo("")
        for n, p in enumerate(res["passages"], 1):
            where = f"{p['title']}" + (f" > {p['heading']}" if p["heading"] else "")
            click.echo(f"[{n}] {where} ({p['source']}) {p['url'] or ''}".rstrip())
    if res.get("mode_note"):
        click.echo(f"\nnote: {res['mode_note']}", err=True)


@main.command()
@click.option("--host", default=None, help="Default 127.0.0.1 (KBQA_HOST).")
@click.option("--port", type=int, default=None, help="Default 8000 (KBQA_PORT).")
@click.option("--index-dir", type=click.Path(file_okay=False))
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="gunicorn worker processes. Default: one per CPU core (KBQA_WORKERS).")
@click.option("--threads", type=click.IntRange(1, 64), default=None,
              help="Threads per worker. Default 4 (KBQA_THREADS).")
@click.option("--dev", is_flag=True, help="Flask's development server (one process, reloads "
              "nothing, for debugging only).")
def serve(host, port, index_dir, workers, threads, dev) -> None:
    """Serve the chat page and the REST API (gunicorn; --dev for Flask's own server)."""
    cfg = _config(index_dir, host=host, port=port, workers=workers, threads=threads)
    kb = _kb(cfg)
    if dev:
        from kbqa.app import create_app
        from kbqa.server import ServeError, check_port

        try:
            check_port(cfg.host, cfg.port)
        except ServeError as exc:
            _fail(str(exc), EXIT_USAGE)
        click.echo(f"kbqa (development server) serving {cfg.index_dir}/ on "
                   f"http://{cfg.host}:{cfg.port}/", err=True)
        create_app(cfg, kb=kb).run(host=cfg.host, port=cfg.port, threaded=True)
        return
    from kbqa.server import ServeError, serve as gserve

    click.echo(f"kbqa serving {cfg.index_dir}/ on http://{cfg.host}:{cfg.port}/ "
               f"({cfg.workers} workers × {cfg.threads} threads)", err=True)
    try:
        gserve(cfg, kb, cfg.workers, cfg.threads)
    except ServeError as exc:
        _fail(str(exc), EXIT_USAGE)


@main.command("eval")
@click.argument("questions", type=click.Path(dir_okay=False))
@click.option("--index-dir", type=click.Path(file_okay=False))
@click.option("--mode", type=click.Choice(["hybrid", "bm25", "dense"]), default=None)
@click.option("--encoder", "encoders", multiple=True, help="Dense encoders to use (repeatable).")
@click.option("--compare", is_flag=True,
              help="Evaluate BM25, each encoder alone and the fusions in one run.")
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None,
              help="Only the questions in this language (e.g. for cross-language runs).")
@click.option("--json", "as_json", is_flag=True)
def eval_cmd(questions, index_dir, mode, encoders, compare, lang, as_json) -> None:
    """Measure recall@1/5, MRR@10, answer hits and out-of-domain refusals."""
    from kbqa.evaluate import EvalError, evaluate, format_table, load_questions

    kb = _kb(_config(index_dir))
    try:
        qs = load_questions(Path(questions))
    except EvalError as exc:
        _fail(str(exc), EXIT_USAGE)
    if lang:
        qs = [q for q in qs if q.get("lang") == lang]
    names = tuple(e["name"] for e in kb.index.manifest["encoders"])
    unknown = [e for e in encoders if e not in names]
    if unknown:
        _fail(f"encoder {unknown[0]!r} is not in this index (it has {', '.join(names)}); "
              "rebuild with `kbqa index --encoder NAME`", EXIT_USAGE)
    runs: dict[str, dict] = {}
    if compare:
        runs["bm25"] = evaluate(kb, qs, mode="bm25")
        for name in names:
            runs[f"dense {name}"] = evaluate(kb, qs, mode="dense", encoders=(name,))
            runs[f"hybrid bm25+{name}"] = evaluate(kb, qs, mode="hybrid", encoders=(name,))
        if len(names) > 1:
            runs["hybrid bm25+" + "+".join(names)] = evaluate(kb, qs, mode="hybrid", encoders=names)
    else:
        label = mode or kb.config.mode
        runs[label] = evaluate(kb, qs, mode=mode, encoders=tuple(encoders) or None)
    if as_json:
        click.echo(json.dumps(runs, ensure_ascii=False, indent=1))
    else:
        click.echo(format_table(runs))


@main.group()
def feedback() -> None:
    """Readers' 👍/👎 ratings of answers (stored by the chat page)."""


@feedback.command("export")
@click.option("--db", type=click.Path(dir_okay=False),
              help="Feedback database. Default: var/feedback.sqlite3 (KBQA_FEEDBACK_DB).")
@click.option("--out", type=click.Path(dir_okay=False, writable=True),
              help="Write JSON Lines here instead of standard output.")
def feedback_export(db, out) -> None:
    """Write every feedback record as one JSON object per line, oldest first."""
    from kbqa.feedback import FeedbackStore, FeedbackUnavailable, export_jsonl

    cfg = _config(None, feedback_db=Path(db) if db else None)
    if not cfg.feedback_db.exists():
        _fail(f"no feedback database at {cfg.feedback_db}; pass --db FILE or set "
              "KBQA_FEEDBACK_DB", EXIT_USAGE)
    store = FeedbackStore(cfg.feedback_db)
    tmp = Path(out).with_name(Path(out).name + ".tmp") if out else None
    try:
        if tmp is not None:
            # Written aside and renamed: a failed export never leaves half a file.
            with open(tmp, "w", encoding="utf-8") as fh:
                n = export_jsonl(store, fh)
            tmp.replace(out)
            click.echo(f"exported {n} feedback records to {out}", err=True)
        else:
            export_jsonl(store, sys.stdout)
    except FeedbackUnavailable as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write {out} ({exc.strerror}); pick another --out")
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


if __name__ == "__main__":
    main()
