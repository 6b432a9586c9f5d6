"""kbqa: a bilingual (中文 + English) Kubernetes knowledge base with a Q&A bot."""

__version__ = "0.1.0"

__all__ = ["KnowledgeBase", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import kbqa.ingest` does not pull in faiss and the encoders.
    if name == "KnowledgeBase":
        from kbqa.kb import KnowledgeBase

        return KnowledgeBase
    raise AttributeError(name)
