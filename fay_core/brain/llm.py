"""LLM calls through litellm, streamed.

Two time limits: ``first_token_timeout_s`` from the request to the first chunk with output (text or a tool call),
so a hung endpoint hands over to the fallbacks (and then the offline answerer) within seconds; and ``timeout_s``
for the whole request, as litellm applies it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from ..errors import EngineError
from ..persona import Persona
from ..settings import LLMSettings

_litellm: Any = None


def litellm_module() -> Any:
    """Import litellm lazily (it takes ~2 s) and keep it off the network at import."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        _litellm = litellm
    return _litellm


@dataclass(frozen=True)
class LLMConfig:
    """The effective LLM settings of a persona: the server's, overridden by the persona's ``llm`` block."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    temperature: float = 0.3
    max_tokens: int | None = None
    timeout_s: float = 30.0
    first_token_timeout_s: float = 8.0
    retries: int = 1
    fallbacks: tuple[str, ...] = ()
    context_tokens: int = 8000
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, settings: LLMSettings, persona: Persona) -> LLMConfig | None:
        """The configuration to use, or ``None`` when no model is configured (offline answering)."""
        p = persona.llm
        model = p.model or settings.model
        if not model:
            return None
        return cls(
            model=model,
            api_base=p.api_base or settings.api_base,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            temperature=p.temperature if p.temperature is not None else settings.temperature,
            max_tokens=p.max_tokens or settings.max_tokens,
            timeout_s=settings.timeout_s,
            first_token_timeout_s=settings.first_token_timeout_s,
            retries=settings.retries,
            fallbacks=tuple(p.fallbacks if p.fallbacks is not None else settings.fallbacks),
            context_tokens=settings.context_tokens,
        )


class LLMClient:
    """Streams chat completions through litellm; every failure becomes an :class:`EngineError`.

    ``label``, ``timeout_setting`` and ``settings_hint`` name the model, its first-output limit and the settings to
    check in that error (another model than the chat LLM, such as the camera's look, names its own).
    """

    def __init__(self, config: LLMConfig, *, label: str = "LLM",
                 timeout_setting: str = "llm.first_token_timeout_s",
                 settings_hint: str = "FAY_LLM__MODEL / FAY_LLM__API_BASE") -> None:
        self.config = config
        self.label = label
        self.timeout_setting = timeout_setting
        self.settings_hint = settings_hint

    def _kwargs(self, model: str) -> dict[str, Any]:
        c = self.config
        kwargs: dict[str, Any] = {
            "model": model,
            "temperature": c.temperature,
            "timeout": c.timeout_s,
            "max_retries": c.retries,
        }
        if c.api_base:
            kwargs["api_base"] = c.api_base
        if c.api_key:
            kwargs["api_key"] = c.api_key
        elif c.api_base:
            kwargs["api_key"] = "none"  # local OpenAI-compatible servers need some key
        if c.max_tokens:
            kwargs["max_tokens"] = c.max_tokens
        kwargs.update(c.extra)
        return kwargs

    async def stream(
        self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None
    ) -> AsyncGenerator[Any, None]:
        """Yield streamed response chunks, trying each fallback model in turn if a model fails before any output.

        A model with no output ``first_token_timeout_s`` after the request counts as failed.
        """
        litellm = litellm_module()
        errors: list[str] = []
        first = self.config.first_token_timeout_s
        for model in (self.config.model, *self.config.fallbacks):
            kwargs = self._kwargs(model)
            if tools:
                kwargs["tools"] = tools
                # plain function tools: skip litellm's MCP gateway check, which imports the optional `mcp` package
                kwargs["_skip_mcp_handler"] = True
            started = False
            response: Any = None
            try:
                head: list[Any] = []
                async with asyncio.timeout(first):  # nothing is yielded inside: the timeout only cancels the request
                    response = await litellm.acompletion(messages=messages, stream=True, **kwargs)
                    chunks = aiter(response)
                    more = True
                    while more and not (head and _has_output(head[-1])):
                        try:
                            head.append(await anext(chunks))
                        except StopAsyncIteration:
                            more = False
                started = True
                for chunk in head:
                    yield chunk
                if more:
                    async for chunk in chunks:
                        yield chunk
                return
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                errors.append(f"{model}: no output within {self.timeout_setting} ({first:g} s)")
            except Exception as exc:
                errors.append(f"{model}: {type(exc).__name__}: {_short(exc)}")
                if started:
                    break  # the answer is partly out: do not restart it with another model
            finally:
                if response is not None:
                    await response.aclose()
        raise EngineError(f"{self.label} failed (" + "; ".join(errors) + f"). Check {self.settings_hint}.")

    async def complete(self, messages: list[dict[str, Any]]) -> str:
        """The whole answer text (streamed underneath)."""
        parts = []
        async for chunk in self.stream(messages):
            delta = chunk.choices[0].delta
            if getattr(delta, "content", None):
                parts.append(delta.content)
        return "".join(parts)


def _has_output(chunk: Any) -> bool:
    """Whether a streamed chunk carries text or a tool call (not only a role, or nothing)."""
    if not chunk.choices:
        return False
    delta = chunk.choices[0].delta
    return bool(getattr(delta, "content", None) or getattr(delta, "tool_calls", None))


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text[:300]
