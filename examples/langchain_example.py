"""A LangChain agent whose experiences sync to a source agent. Runs offline.

    pip install ./core ./adapters/langchain
    python examples/langchain_example.py                 # starts a local hub
    # or sync to a running hub, with a token bound to this example's agent and instance:
    experience-sync token create --agent travel-assistant --instance langchain-travel-1
    EXPERIENCE_SYNC_HUB_TOKEN=xs_... python examples/langchain_example.py --hub http://127.0.0.1:8787

The agent is a real langchain-core tool-calling loop with real tools and a
retriever; its chat model is a scripted fake, so no API key is needed. The two
lines that matter are marked "experience-sync".
"""

from __future__ import annotations

from typing import Any

from _common import run_example
from experience_sync_langchain import ExperienceSyncCallbackHandler
from langchain_core.callbacks import dispatch_custom_event
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig, chain
from langchain_core.tools import BaseTool, ToolException, tool

from experience_sync.api import ExperienceSyncManager


class ScriptedChatModel(GenericFakeChatModel):
    """A fake chat model that can be bound to tools like a real one."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        return self


@tool
def web_search(query: str) -> str:
    """Search the web."""
    return f"Top result for {query!r}: trains from Paris to Lyon run every 30 minutes."


@tool
def book_train(route: str) -> str:
    """Book a train ticket (the booking service is down in this example)."""
    raise ToolException("booking service unavailable")


book_train.handle_tool_error = True


class TravelGuide(BaseRetriever):
    """A retriever over a tiny travel guide."""

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [Document(page_content="Lyon is two hours from Paris by TGV.",
                         metadata={"source": "guide/lyon.md"})]


def build_agent() -> Any:
    """The travel agent: retrieve, then call tools until the model answers."""
    model = ScriptedChatModel(messages=iter([
        AIMessage(content="", tool_calls=[{"name": "web_search", "id": "1",
                                           "args": {"query": "Paris to Lyon trains"}}]),
        AIMessage(content="", tool_calls=[{"name": "book_train", "id": "2",
                                           "args": {"route": "Paris-Lyon"}}]),
        AIMessage(content="Trains run every 30 minutes; book at the station, "
                          "online booking is down."),
    ]))
    tools: dict[str, BaseTool] = {t.name: t for t in (web_search, book_train)}
    bound = model.bind_tools(list(tools.values()))
    guide = TravelGuide()

    @chain
    def travel_agent(question: str, config: RunnableConfig) -> str:
        guide.invoke(question, config)
        messages: list[BaseMessage] = [HumanMessage(question)]
        for _ in range(6):
            reply = bound.invoke(messages, config)
            messages.append(reply)
            if not getattr(reply, "tool_calls", None):
                # an explicit memory for the source agent
                dispatch_custom_event("experience_sync.memory", {
                    "content": "Online train booking fails; tell travellers to book at "
                               "the station.",
                    "tags": ["booking"], "importance": 0.8,
                }, config=config)
                return str(reply.content)
            for call in reply.tool_calls:
                messages.append(tools[call["name"]].invoke(call, config))
        return "no answer"

    return travel_agent


def run_langchain_agent(manager: ExperienceSyncManager, instance_id: str) -> str:
    """Run the agent once with the experience-sync callback handler."""
    # The travel guide is curated, so what its retriever returns is recorded as
    # knowledge (off by default: retrieved documents are not learned knowledge).
    handler = ExperienceSyncCallbackHandler(  # experience-sync
        manager, instance_id, record_retrievals=True
    )
    agent = build_agent()
    answer: str = agent.invoke("How do I get from Paris to Lyon?",
                               config={"callbacks": [handler]})  # experience-sync
    return answer


def main() -> None:
    run_example(__doc__, "langchain-travel-1", "agent answered:", run_langchain_agent)


if __name__ == "__main__":
    main()
