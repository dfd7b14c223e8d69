"""The chat assistant: tools over the store, an offline analyst (default) and an OpenAI backend.

Tools read the store through repositories with validated arguments; the only write is a proposal that
waits for an operator. Nothing in this package executes an action.

    backend = make_backend(store)              # settings choose offline | openai
    answer = ask(backend, "why is orders failing?")
"""

from engine.assistant.backend import AssistantBackend, ask
from engine.assistant.config import AssistantConfig, load_assistant_config, make_backend
from engine.assistant.results import (
    Answer,
    Done,
    ProposalDraft,
    TextDelta,
    ToolCall,
    ToolResult,
    ToolStatus,
    ToolStep,
    Turn,
)

__all__ = ["Answer", "AssistantBackend", "AssistantConfig", "Done", "ProposalDraft", "TextDelta", "ToolCall",
           "ToolResult", "ToolStatus", "ToolStep", "Turn", "ask", "load_assistant_config", "make_backend"]
