from kbqa.ingest import Document
from kbqa.segment import chunk_document, split_sentences, tokenize


def doc(body: str, lang: str = "en") -> Document:
    return Document(collection="t", source=f"{lang}/d.md", lang=lang, title="Title", body=body)


def test_chinese_sentences_split_at_chinese_punctuation():
    assert split_sentences("etcd 是键值存储。它使用 Raft 协议！为什么？因为要一致；就这样") == [
        "etcd 是键值存储。", "它使用 Raft 协议！", "为什么？", "因为要一致；", "就这样"]


def test_english_sentences_split_but_versions_and_paths_survive():
    assert split_sentences("Run v1.29 now. Then check /etc/kubernetes/admin.conf! Done?") == [
        "Run v1.29 now.", "Then check /etc/kubernetes/admin.conf!", "Done?"]


def test_chunks_follow_headings_and_know_their_path():
    body = "Intro text.\n\n## Backup {#backup}\n\nSave it.\n\n### With etcdctl\n\nRun etcdctl.\n"
    chunks = chunk_document(doc(body))
    assert [(c.heading, c.anchor) for c in chunks] == [
        ("", ""), ("Backup", "backup"), ("Backup > With etcdctl", "with-etcdctl")]
    assert chunks[2].title == "Title" and "Title > Backup > With etcdctl" in chunks[2].embed_text()


def test_code_block_is_never_cut_even_when_too_long():
    code = "```bash\n" + "\n".join(f"echo line {i}" for i in range(300)) + "\n```"
    body = "## Steps\n\nFirst paragraph.\n\n" + code + "\n\nAfter."
    chunks = chunk_document(doc(body), chunk_chars_en=200)
    holding = [c for c in chunks if "echo line 0" in c.text]
    assert len(holding) == 1 and "echo line 299\n```" in holding[0].text
    assert all(c.text.count("```") % 2 == 0 for c in chunks)


def test_table_is_never_cut():
    table = "| a | b |\n|---|---|\n" + "\n".join(f"| r{i} | v{i} |" for i in range(80))
    chunks = chunk_document(doc("## T\n\n" + table), chunk_chars_en=100)
    assert sum("| r0 |" in c.text for c in chunks) == 1
    assert any("| r0 |" in c.text and "| r79 |" in c.text for c in chunks)


def test_long_paragraph_split_at_sentence_ends_sized_per_language():
    zh = "控制平面负责管理集群的整体状态。" * 60
    en = "The control plane manages the overall state of the cluster. " * 60
    zh_chunks = chunk_document(doc(zh, "zh"), chunk_chars_en=900, chunk_chars_zh=300)
    en_chunks = chunk_document(doc(en), chunk_chars_en=900, chunk_chars_zh=300)
    assert all(len(c.text) <= 300 for c in zh_chunks) and len(zh_chunks) >= 3
    assert all(len(c.text) <= 900 for c in en_chunks) and len(en_chunks) >= 3
    assert all(c.text.endswith("。") for c in zh_chunks)
    assert all(c.text.endswith(".") for c in en_chunks)


def test_dictionary_terms_stay_whole():
    toks = tokenize("kube-apiserver 与控制平面、名字空间和污点以及 kube-controller-manager")
    for term in ("kube-apiserver", "控制平面", "名字空间", "污点", "kube-controller-manager"):
        assert term in toks, (term, toks)


def test_english_tokens_are_stemmed_and_stopwords_dropped():
    toks = tokenize("How are the Pods scheduled onto nodes?")
    assert "pod" in toks and "node" in toks and "schedul" in toks
    assert "how" not in toks and "the" not in toks


def test_hyphenated_names_also_match_their_parts():
    assert {"apiserver", "kube"} <= set(tokenize("kube-apiserver"))
