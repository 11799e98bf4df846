"""LangChain callback handlers that record experiences through an ``ExperienceSyncManager``.

A handler is attached like any LangChain callback::

    handler = ExperienceSyncCallbackHandler(manager, instance_id="support-bot-1")
    agent.invoke(inputs, config={"callbacks": [handler]})

What it records (see the README for the full table):

* a tool that ends: skill usage of the tool, success; a tool that raises or
  answers a ``ToolMessage`` with ``status="error"``: skill usage, failure;
* retriever results, only with ``record_retrievals=True`` (off by default: a
  retrieved document is not learned knowledge): one knowledge item per
  document (evidence names the retriever and the document source);
* the end (or error) of a top-level run: an interaction with the tools used and
  how many failed; with ``remember_outputs=True`` also a memory of the output;
* ``dispatch_custom_event("experience_sync.memory", {...})`` (and ``.knowledge``,
  ``.skill``, ``.characteristic``): the explicit experience.

Prompts and model messages are never read (the handlers tell LangChain to
skip LLM and chat-model callbacks); tool inputs are not recorded; outputs only when asked to. Every
event still passes the core's ``experience_sync_filter_event`` hook.

Handlers never raise into the run: a failed recording is logged and counted in
:attr:`ExperienceSyncCallbackHandler.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler

from experience_sync_langchain.recorder import ExperienceSyncRecorder

if TYPE_CHECKING:
    from langchain_core.agents import AgentFinish
    from langchain_core.documents import Document


class _RecorderHandlerMixin:
    """What both handlers share: the recorder, the callbacks they refuse, the counts.

    Listed before LangChain's base class so its properties take precedence.
    """

    recorder: ExperienceSyncRecorder

    def __init__(self, manager: Any, instance_id: str, **options: Any) -> None:
        super().__init__()  # the rest of the MRO: LangChain's callback mixins, then the handler base class
        self.recorder = ExperienceSyncRecorder(manager, instance_id, **options)

    # Prompts and model messages are never wanted: LangChain does not even
    # hand them to this handler.
    @property
    def ignore_llm(self) -> bool:
        """LLM and chat-model callbacks are not delivered to this handler."""
        return True

    @property
    def ignore_chat_model(self) -> bool:
        """Chat-model start callbacks are not delivered to this handler."""
        return True

    @property
    def ignore_retry(self) -> bool:
        """Retry callbacks are not delivered to this handler."""
        return True

    @property
    def errors(self) -> int:
        """How many recordings failed (logged, never raised into the run)."""
        return self.recorder.errors

    @property
    def recorded(self) -> int:
        """How many experiences were handed to the manager."""
        return self.recorder.recorded


class ExperienceSyncCallbackHandler(_RecorderHandlerMixin, BaseCallbackHandler):
    """A synchronous LangChain callback handler that records experiences.

    Takes the arguments of :class:`ExperienceSyncRecorder`. Safe to share
    between threads and runs: start and end are matched by ``run_id``.
    """

    raise_error = False
    # Recording only appends to the local outbox: cheap enough to run inline,
    # which keeps the order of start and end callbacks.
    run_inline = True

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self.recorder.tool_start(serialized, run_id, parent_run_id, kwargs)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.tool_end(output, run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.tool_error(error, run_id)

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self.recorder.chain_start(serialized, run_id, parent_run_id, kwargs)

    def on_chain_end(self, outputs: dict[str, Any], *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.chain_end(outputs, run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.chain_error(error, run_id)

    def on_agent_finish(self, finish: AgentFinish, *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.agent_finish(finish, run_id)

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self.recorder.retriever_start(serialized, run_id, parent_run_id, kwargs)

    def on_retriever_end(
        self, documents: Sequence[Document], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.recorder.retriever_end(documents, run_id)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.retriever_error(error, run_id)

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.custom_event(name, data, run_id)


class AsyncExperienceSyncCallbackHandler(_RecorderHandlerMixin, AsyncCallbackHandler):
    """The asynchronous twin of :class:`ExperienceSyncCallbackHandler`.

    Recording appends to the manager's local outbox and never waits on the
    network, so the coroutines do not yield to a thread.
    """

    raise_error = False

    async def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self.recorder.tool_start(serialized, run_id, parent_run_id, kwargs)

    async def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.tool_end(output, run_id)

    async def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.tool_error(error, run_id)

    async def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self.recorder.chain_start(serialized, run_id, parent_run_id, kwargs)

    async def on_chain_end(self, outputs: dict[str, Any], *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.chain_end(outputs, run_id)

    async def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.chain_error(error, run_id)

    async def on_agent_finish(self, finish: AgentFinish, *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.agent_finish(finish, run_id)

    async def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self.recorder.retriever_start(serialized, run_id, parent_run_id, kwargs)

    async def on_retriever_end(
        self, documents: Sequence[Document], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.recorder.retriever_end(documents, run_id)

    async def on_retriever_error(
        self, error: BaseException, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.recorder.retriever_error(error, run_id)

    async def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.recorder.custom_event(name, data, run_id)
