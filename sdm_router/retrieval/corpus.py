"""The retrieval store over the configured corpus (the packaged fact tables by default)."""

from __future__ import annotations

from sdm_router.config import RetrievalSettings
from sdm_router.retrieval.fact_passages import build_passages
from sdm_router.retrieval.faiss_store import FaissDocumentStore, load_jsonl_documents

EMBEDDED_FACTS = "embedded-facts"
EMBEDDED_MODEL = "embedded"


def make_retriever(settings: RetrievalSettings) -> FaissDocumentStore:
    """``embedded-facts`` indexes passages built from the fact tables; anything else is a JSONL
    file of ``{id, text, source}`` documents. ``embedding_model: embedded`` is packaged MiniLM."""
    if settings.corpus == EMBEDDED_FACTS:
        documents = build_passages()
    else:
        documents = load_jsonl_documents(settings.corpus)
    model = None if settings.embedding_model == EMBEDDED_MODEL else settings.embedding_model
    return FaissDocumentStore(
        documents, min_score=settings.min_score, model_path=model, device=settings.device
    )
