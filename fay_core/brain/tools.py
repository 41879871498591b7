"""Tools for the LLM: langchain tools as OpenAI function schemas, and calling them safely for a session.

Arguments a tool marks with langchain's ``InjectedToolArg`` are never shown to the model and never taken from
it: the session supplies them (:class:`ToolContext`). Fay injects ``customer_id`` (the session's authenticated
customer, or ``None``), ``session_id``, ``language`` and ``data_dir`` (where a tool may keep its files). Whatever
the model puts in an injected argument is thrown away, so a model talked into asking for "customer 42's balance"
still reads only the signed-in customer's ledger. The audit record of a call shows the arguments the tool ran
with (:func:`audited_arguments`: the model's allowed ones and the injected ``customer_id``) beside what the model
asked for.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_RESULT_CHARS = 4000
#: the injected arguments a tool call's audit record shows (the others are the session's own id, language, folder)
AUDITED_INJECTED = ("customer_id",)


@dataclass
class ToolCall:
    """A tool call assembled from streamed deltas."""

    id: str
    name: str
    arguments: str = ""

    def as_message(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments or "{}"}}


def openai_schema(tool: Any) -> dict[str, Any]:
    """The OpenAI ``tools`` entry of a langchain tool (injected arguments left out)."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    return convert_to_openai_tool(tool)


def injected_args(tool: Any) -> set[str]:
    """The names of a tool's arguments that the session supplies."""
    keys = getattr(tool, "_injected_args_keys", None)
    if keys is not None:
        return set(keys)
    try:
        return set(tool.get_input_schema().model_fields) - set(tool.tool_call_schema.model_fields)
    except Exception:  # pragma: no cover - tools without pydantic schemas
        return set()


@dataclass
class ToolContext:
    """What a session injects into its tools (never taken from the model).

    ``customer_id`` is set when the customer signs in (``authenticate_customer``) and may change during a session.
    """

    session_id: str
    language: str
    data_dir: str
    customer_id: str | None = None

    def values(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "session_id": self.session_id, "language": self.language,
                "data_dir": self.data_dir}


def collect_tool_calls(partial: dict[int, ToolCall], deltas: Any) -> None:
    """Merge streamed ``delta.tool_calls`` into ``partial`` (keyed by index)."""
    for d in deltas or []:
        index = getattr(d, "index", None)
        index = len(partial) if index is None else index
        fn = getattr(d, "function", None)
        call = partial.get(index)
        if call is None:
            call = partial[index] = ToolCall(id=getattr(d, "id", None) or f"call_{index + 1}", name="")
        elif getattr(d, "id", None):
            call.id = d.id
        if fn is not None:
            if getattr(fn, "name", None):
                call.name = fn.name
            if getattr(fn, "arguments", None):
                call.arguments += fn.arguments


def parse_arguments(raw: str) -> dict[str, Any]:
    """The model's arguments as a dict (``{}`` if they are not a JSON object), for events and the audit log."""
    try:
        args = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {"_raw": raw[:500]}
    return args if isinstance(args, dict) else {"_raw": raw[:500]}


async def run_tool(tool: Any, call: ToolCall, context: ToolContext) -> tuple[str, str, dict[str, Any], Any]:
    """Call ``tool`` for ``call``; returns ``(result, error, the arguments it ran with, injected ones included,
    artifact)``.

    A tool made with langchain's ``response_format="content_and_artifact"`` returns ``(content, artifact)``: the
    content goes to the model, the artifact only to the audit record (the camera's look puts its frame's hash
    there); other tools' artifact is ``None``. Arguments that are not valid JSON run nothing: ``("", error, {},
    None)``.
    """
    try:
        args = json.loads(call.arguments) if call.arguments.strip() else {}
        if not isinstance(args, dict):
            raise ValueError("arguments must be a JSON object")
    except ValueError as exc:
        return "", f"the arguments are not valid JSON ({exc})", {}, None
    allowed = set(tool.tool_call_schema.model_fields)
    args = {k: v for k, v in args.items() if k in allowed}  # injected or unknown keys from the model: dropped
    values = context.values()
    for key in injected_args(tool):
        args[key] = values.get(key)
    artifact = None
    try:
        if tool.response_format == "content_and_artifact":  # a tool call in, a ToolMessage with the artifact out
            message = await tool.ainvoke({"name": call.name, "args": args, "id": call.id, "type": "tool_call"})
            result, artifact = message.content, message.artifact
        else:
            result = await tool.ainvoke(args)
    except Exception as exc:
        log.info("tool %s failed: %s", call.name, exc)
        return "", f"{type(exc).__name__}: {exc}", args, None
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + " [truncated]"
    return text, "", args, artifact


def audited_arguments(tool: Any, ran_with: dict[str, Any]) -> dict[str, Any]:
    """What the audit shows of the arguments a tool ran with: the model's allowed ones and the injected customer."""
    hidden = injected_args(tool) - set(AUDITED_INJECTED)
    return {k: v for k, v in ran_with.items() if k not in hidden}
