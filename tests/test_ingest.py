import re

import pytest

from kbqa.ingest import IngestError, clean_hugo, detect_lang, lang_from_path, parse_page
from kbqa.segment import chunk_document, parse_blocks


def page(text: str, source: str = "en/x.md"):
    return parse_page(text.encode("utf-8"), "t", source)


def test_glossary_tooltip_becomes_its_text():
    body, _ = clean_hugo('The {{< glossary_tooltip text="kubelet" term_id="kubelet" >}} runs.')
    assert body.strip() == "The kubelet runs."


def test_multiline_tooltip_and_term_id_only():
    body, _ = clean_hugo('A {{< glossary_tooltip\n  term_id="pod" >}} here.')
    assert body.strip() == "A pod here."


def test_note_warning_caution_keep_content():
    text = ("{{< note >}}\nKeep this note.\n{{< /note >}}\n\n{{< warning >}}Mind this."
            "{{< /warning >}}\n\n{{< caution >}}Careful.{{< /caution >}}")
    body, _ = clean_hugo(text)
    for s in ("Keep this note.", "Mind this.", "Careful."):
        assert s in body
    assert "{{" not in body and "}}" not in body


def test_feature_state_becomes_metadata():
    body, meta = clean_hugo('Intro.\n{{< feature-state for_k8s_version="v1.29" state="beta" >}}\nText.')
    assert meta["feature_state"] == [{"for_k8s_version": "v1.29", "state": "beta"}]
    assert "feature" not in body and "v1.29" not in body


def test_unknown_shortcodes_removed_and_comment_shortcode_dropped_with_content():
    text = ('Before {{< figure src="/a.svg" caption="x" >}} after.\n'
            '{{< comment >}}hidden text{{< /comment >}}\n{{% code_sample file="a.yaml" %}}\nEnd.')
    body, _ = clean_hugo(text)
    assert "hidden text" not in body and "figure" not in body and "code_sample" not in body
    assert "Before" in body and "after." in body and "End." in body


def test_html_comments_dropped_including_english_original():
    text = "<!--\nThe English original paragraph.\n-->\n中文译文段落。\n<!-- overview -->"
    body, _ = clean_hugo(text, "zh")
    assert "English original" not in body and "<!--" not in body
    assert "中文译文段落。" in body


def test_links_reduced_to_text_code_blocks_kept():
    text = ("See [the API](/docs/api/#x) and ![img](/a.png) and <https://k8s.io>.\n\n"
            "```shell\nkubectl get [pods](x)\n```\n")
    body, _ = clean_hugo(text)
    assert "See the API and img and https://k8s.io." in body
    assert "```shell\nkubectl get [pods](x)\n```" in body  # code is not rewritten


def test_heading_shortcode_localised():
    assert clean_hugo('## {{% heading "prerequisites" %}}', "zh")[0].strip() == "## 准备开始"
    assert clean_hugo('## {{% heading "whatsnext" %}}', "en")[0].strip() == "## What's next"


def test_front_matter_title_and_lang_from_front_matter():
    doc = page("---\ntitle: Hello\nlang: zh\ntags: [a]\n---\n正文内容。\n", source="x.md")
    assert doc.title == "Hello" and doc.lang == "zh" and doc.meta["tags"] == ["a"]


def test_lang_from_folder_beats_front_matter():
    assert page("---\ntitle: T\nlang: en\n---\nBody.\n", "zh-cn/a.md").lang == "zh"
    assert lang_from_path("zh/a/b.md") == "zh" and lang_from_path("en/a.md") == "en"
    assert lang_from_path("a/b.md") is None


def test_lang_detection_without_folder_or_front_matter():
    assert detect_lang("Kubernetes 是一个开源的容器编排平台，用于自动化部署。") == "zh"
    assert detect_lang("Kubernetes is an open source container orchestrator.") == "en"
    assert page("控制平面负责管理集群的状态。\n", "misc.md").lang == "zh"


def test_bad_front_matter_is_an_ingest_error_naming_the_reason():
    with pytest.raises(IngestError, match="front matter"):
        page("---\ntitle: [unclosed\n---\nBody\n")


@pytest.mark.parametrize("raw,reason", [
    (b"\xff\xfe\x00bad", "binary"),
    (b"caf\xe9 au lait", "UTF-8"),
    (b"---\ntitle: x\n---\n<!-- only a comment -->\n", "no text"),
])
def test_unusable_pages_raise_with_reason(raw, reason):
    with pytest.raises(IngestError, match=reason):
        parse_page(raw, "t", "en/bad.md")


def test_unclosed_fence_is_closed_so_markdown_stays_valid():
    doc = page("Intro.\n\n```bash\necho hi\n")
    assert doc.body.rstrip().endswith("```")


def test_heading_anchor_ids_parsed():
    blocks = parse_blocks("## Control Plane {#control-plane}\n\ntext\n## 插件（Addons）\n")
    heads = [(b.text, b.anchor) for b in blocks if b.kind == "heading"]
    assert heads == [("Control Plane", "control-plane"), ("插件（Addons）", "插件addons")]


# --- the real docs -----------------------------------------------------------

def test_every_docs_page_ingests_and_yields_clean_chunks(docs_documents):
    docs, skipped = docs_documents
    assert not skipped, skipped
    assert len(docs) >= 100
    for doc in docs:
        chunks = chunk_document(doc)
        assert chunks, f"{doc.source} yielded no chunks"
        for c in chunks:
            for marker in ("{{<", "{{%", "<!--"):
                assert marker not in c.text, (c.id, marker)


def test_zh_cn_chunks_carry_no_english_original_from_comments(docs_documents):
    from tests.conftest import DOCS

    docs, _ = docs_documents
    checked = 0
    for doc in docs:
        if doc.lang != "zh":
            continue
        raw = (DOCS / doc.source).read_text("utf-8")
        comments = re.findall(r"<!--(.*?)-->", raw, re.S)
        english = {p.strip() for c in comments for p in c.split("\n\n")
                   if len(p.strip()) > 60 and not re.search(r"[\u4e00-\u9fff]", p)
                   and not p.strip().startswith(("```", "|", "-", "#", "title", "reviewers"))
                   and p.strip() not in raw.replace(c, "")}
        text = "\n".join(c.text for c in chunk_document(doc))
        for para in english:
            first_line = para.splitlines()[0].strip()
            if len(first_line) > 40 and "{{" not in first_line and "[" not in first_line:
                checked += 1
                assert first_line not in text, (doc.source, first_line)
    assert checked > 500  # the check really looked at the comment paragraphs
