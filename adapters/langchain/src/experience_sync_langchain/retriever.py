"""A LangChain retriever over what the fleet learned, for LCEL chains.

::

    retriever = ExperienceSyncRetriever(manager=manager, instance_id="support-bot-1", k=5)
    chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | model

Each document is one ``manager.search`` hit from the instance's replica
(ranked, offline, read-your-writes): ``page_content`` is the hit's text (what a
prompt may show), ``metadata`` its ``kind``, ``id``, ``score``,
``source_instances``, ``local`` and, for knowledge, ``status`` and
``verifications``. Ids and metadata never enter ``page_content``.

The callback handler does not record these documents back as knowledge
unless it was made with ``record_retrievals=True``.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from experience_sync.api import SearchHit

__all__ = ["ExperienceSyncRetriever", "document_of_hit"]


def document_of_hit(hit: SearchHit) -> Document:
    """A search hit as a LangChain ``Document`` (text as content, the rest as metadata)."""
    metadata: dict[str, Any] = {
        "kind": hit.kind,
        "id": hit.id,
        "score": hit.score,
        "source_instances": list(hit.provenance.source_instances),
        "local": hit.provenance.local,
    }
    if hit.kind == "knowledge":
        metadata["status"] = hit.provenance.status
        metadata["verifications"] = hit.provenance.verifications
    return Document(page_content=hit.text, metadata=metadata, id=hit.id)


class ExperienceSyncRetriever(BaseRetriever):
    """Retrieves the fleet's memories, knowledge and skills for a query.

    :param manager: an initialised ``ExperienceSyncManager``.
    :param instance_id: the instance whose replica is searched.
    :param k: how many documents (1-100).
    :param kinds: the kinds searched (``memory``, ``knowledge``, ``skill``; default all).
    :param tags: only memories carrying all these tags.
    :param min_confidence: only items at least this confident.
    :param knowledge_status: ``integrated`` (default), ``pending`` or ``all``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    manager: Any
    instance_id: str
    k: int = Field(default=5, ge=1, le=100)
    kinds: list[Literal["memory", "knowledge", "skill"]] | None = None
    tags: list[str] | None = None
    min_confidence: float | None = None
    knowledge_status: Literal["integrated", "pending", "all"] = "integrated"

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits: list[SearchHit] = self.manager.search(
            self.instance_id,
            query,
            self.k,
            kinds=self.kinds,
            tags=self.tags,
            min_confidence=self.min_confidence,
            knowledge_status=self.knowledge_status,
        )
        return [document_of_hit(hit) for hit in hits]
