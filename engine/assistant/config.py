"""Which assistant backend answers, and how the OpenAI one connects. Chosen by settings, never by patching.

Environment: ``SELFHEAL_ASSISTANT_BACKEND`` (offline | openai), ``SELFHEAL_ASSISTANT_MODEL`` (or
``OPENAI_MODEL``), ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``SELFHEAL_ASSISTANT_TIMEOUT_S``,
``SELFHEAL_ASSISTANT_MAX_TOOL_ROUNDS``. The console also reads the ``[llm]`` table of Streamlit secrets
(``backend``, ``model``, ``api_key``, ``base_url``, ``timeout_s``, ``max_tool_rounds``), which wins over the
environment.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.assistant.backend import AssistantBackend
from engine.assistant.context import utcnow
from engine.errors import ConfigError
from engine.security.roles import Principal
from engine.store.db import Store


class AssistantConfig(BaseSettings):
    """Assistant settings; the API key is a SecretStr, so it never shows in a repr or a log line."""

    model_config = SettingsConfigDict(env_prefix="SELFHEAL_ASSISTANT_", extra="ignore", frozen=True,
                                      populate_by_name=True)

    backend: Literal["offline", "openai"] = Field("offline", description="which backend answers")
    model: str = Field("gpt-4o-mini", min_length=1, max_length=200,
                       validation_alias=AliasChoices("SELFHEAL_ASSISTANT_MODEL", "OPENAI_MODEL"))
    api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    base_url: str | None = Field(None, validation_alias=AliasChoices("OPENAI_BASE_URL"))
    timeout_s: float = Field(30.0, gt=0, le=600, description="seconds per model request")
    max_tool_rounds: int = Field(5, ge=1, le=20, description="model turns that may call tools, per answer")

    def endpoint(self) -> str:
        """Where the model lives, fit to show: scheme and host only (no credentials, no path)."""
        if not self.base_url:
            return "api.openai.com"
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def describe(self) -> str:
        if self.backend == "openai":
            return f"OpenAI-compatible model {self.model} at {self.endpoint()}"
        return "offline analyst (no network)"


def load_assistant_config(**overrides: object) -> AssistantConfig:
    """Config from the environment plus explicit overrides (e.g. Streamlit secrets); ConfigError if invalid."""
    given = {k: v for k, v in overrides.items() if v not in (None, "")}
    try:
        return AssistantConfig(**given)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ConfigError(f"invalid assistant settings: {problems}") from e


def make_backend(store: Store, config: AssistantConfig | None = None, *, actor: str = "assistant",
                 clock: Callable[[], datetime] = utcnow, principal: Principal | None = None) -> AssistantBackend:
    """The backend the settings choose: the offline analyst by default, the OpenAI one when configured."""
    config = config or load_assistant_config()
    if config.backend == "openai":
        from engine.assistant.openai_backend import OpenAIBackend

        if (config.api_key is None or not config.api_key.get_secret_value()) and not config.base_url:
            raise ConfigError("SELFHEAL_ASSISTANT_BACKEND=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a "
                              "local OpenAI-compatible server)")
        return OpenAIBackend(store, config, actor=actor, clock=clock, principal=principal)
    from engine.assistant.analyst import OfflineAnalyst

    return OfflineAnalyst(store, actor=actor, clock=clock, principal=principal)
