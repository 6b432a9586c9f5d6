import json
import shutil

from tests.conftest import CORPUS, DEV, run_cli


def test_ask_without_an_index_says_which_command_builds_it(tmp_path):
    r = run_cli("ask", "etcd 的作用是什么？", "--index-dir", str(tmp_path / "none"))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "kbqa index" in lines[0] and "Traceback" not in r.stderr


def test_index_with_missing_source_fails_in_one_line(tmp_path):
    r = run_cli("index", "--source", str(tmp_path / "missing"), "--index-dir", str(tmp_path / "i"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "does not exist" in r.stderr


def test_ask_json_and_text(corpus_index):
    r = run_cli("ask", "What does kube-proxy do?", "--json", "--top-k", "3",
                "--index-dir", str(corpus_index))
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["found"] and len(body["passages"]) == 3 and body["lang"] == "en"
    r = run_cli("ask", "What does kube-proxy do?", "--index-dir", str(corpus_index))
    assert r.returncode == 0 and "[1]" in r.stdout and "kube-proxy.md" in r.stdout


def test_ask_rejects_bad_top_k_in_one_line(corpus_index):
    r = run_cli("ask", "etcd", "--top-k", "0", "--index-dir", str(corpus_index))
    assert r.returncode == 2 and "top_k" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_index_builds_counts_skips_and_is_stale_aware(tmp_path):
    src = tmp_path / "src"
    (src / "en").mkdir(parents=True)
    shutil.copy(CORPUS / "en" / "etcd.md", src / "en" / "etcd.md")
    (src / "en" / "broken.md").write_text("---\ntitle: [oops\n---\nbody\n")
    idx = tmp_path / "idx"
    r = run_cli("index", "--source", str(src), "--index-dir", str(idx))
    assert r.returncode == 0, r.stderr
    assert "indexed 1 files" in r.stdout and "skipped 1" in r.stdout
    assert "broken.md" in r.stderr and "front matter" in r.stderr
    r = run_cli("index", "--if-stale", "--source", str(src), "--index-dir", str(idx))
    assert "up to date" in r.stdout
    (src / "en" / "pods.md").write_text((CORPUS / "en" / "pods.md").read_text())
    r = run_cli("index", "--if-stale", "--source", str(src), "--index-dir", str(idx))
    assert "indexed 2 files" in r.stdout
    r = run_cli("ask", "What is a Pod?", "--json", "--index-dir", str(idx))
    assert json.loads(r.stdout)["passages"][0]["source"] == "en/pods.md"


def test_eval_reports_metrics_and_rejects_bad_files(corpus_index, tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in [
        {"id": "1", "lang": "zh", "question": "etcd 的作用是什么？", "gold": ["etcd.md"],
         "answer_any": ["etcd"]},
        {"id": "2", "lang": "en", "question": "Which planet is closest to the sun?", "gold": [],
         "answer_any": []}]) + "\n")
    r = run_cli("eval", str(qa), "--json", "--index-dir", str(corpus_index))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["hybrid"]["overall"]
    assert res["recall@5"] == 1.0 and res["ood_refused"] == 1.0
    r = run_cli("eval", str(qa), "--compare", "--index-dir", str(corpus_index))
    assert r.returncode == 0 and "| bm25 |" in r.stdout and "| dense use-multilingual-v3 |" in r.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    r = run_cli("eval", str(bad), "--index-dir", str(corpus_index))
    assert r.returncode == 2 and "bad.jsonl:1" in r.stderr


def test_eval_on_the_dev_questions_runs(corpus_index):
    r = run_cli("eval", str(DEV), "--index-dir", str(corpus_index))
    assert r.returncode == 0, r.stderr
    assert "| hybrid | overall | 44 |" in r.stdout


def test_damaged_or_old_index_fails_in_one_line(tmp_path):
    import json as _json

    src = tmp_path / "src" / "en"
    src.mkdir(parents=True)
    shutil.copy(CORPUS / "en" / "kubelet.md", src / "kubelet.md")
    idx = tmp_path / "idx"
    assert run_cli("index", "--source", str(src.parent), "--index-dir", str(idx)).returncode == 0
    version = idx / (idx / "CURRENT").read_text().strip()
    chunks = version / "chunks.jsonl"
    chunks.write_bytes(chunks.read_bytes()[:100])  # truncated
    r = run_cli("ask", "kubelet", "--index-dir", str(idx))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "chunks.jsonl" in r.stderr
    assert "kbqa index" in r.stderr
    manifest = version / "manifest.json"
    m = _json.loads(manifest.read_text())
    m["format"] = 0
    manifest.write_text(_json.dumps(m))
    r = run_cli("ask", "kubelet", "--index-dir", str(idx))
    assert r.returncode != 0 and "format" in r.stderr and len(r.stderr.strip().splitlines()) == 1
