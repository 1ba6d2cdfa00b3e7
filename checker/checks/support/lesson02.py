"""Lesson 2's plumbing: the check's own client model, servers built from the module, and random passages.

Shared by the lesson's visible checks (`lesson02.py` and its parts) and its hidden checks. The
fakes stay in the check's process: student code is handed stand-ins (`target.expose`) whose
calls come back here, so what a fake records is the check's own observation. No network and no
API key anywhere.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from mcp import MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolResult,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitResult,
    ErrorData,
    ModelHint,
    ModelPreferences,
    SamplingMessage,
    TextContent,
)

from checker.checks.kit.text import word
from checker.target import Target


def random_passage(rng: random.Random, sentences: int | None = None) -> str:
    """Random prose of `sentences` sentences (3 to 8 if not given): what a summary is asked for."""
    out = []
    for _ in range(sentences or rng.randint(3, 8)):
        words = [word(rng, 3) for _ in range(rng.randint(4, 12))]
        out.append(" ".join(words).capitalize() + rng.choice([".", ".", "!", "?"]))
    return " ".join(out)


def prose_of_words(rng: random.Random, count: int) -> str:
    """Prose of exactly `count` whitespace-separated words, in sentences."""
    words = [word(rng, 3) for _ in range(count)]
    sentences = [words[start:start + 8] for start in range(0, count, 8)]
    return " ".join(" ".join(sentence).capitalize() + "." for sentence in sentences)


def first_line(result: CallToolResult) -> str:
    """The first line of a tool result's text, for a one-line failure message."""
    text = result.content[0].text if result.content and result.content[0].type == "text" else ""
    return text.splitlines()[0] if text else "(no text)"


@dataclass
class FakeClientModel:
    """The check's own sampling callback: records each request, answers with a random reply."""

    rng: random.Random
    reply: str = ""
    model: str = ""
    content: Any = None  # a content block to send instead of the text reply
    seen: list[CreateMessageRequestParams] = field(default_factory=list)
    events: list[str] | None = None

    def __post_init__(self) -> None:
        self.reply = self.reply or " ".join(word(self.rng, 3) for _ in range(self.rng.randint(5, 12)))
        self.model = self.model or f"client-model-{self.rng.randint(1000, 9999)}"

    async def __call__(self, context: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
        self.seen.append(params)
        if self.events is not None:
            self.events.append("sample")
        content = self.content or TextContent(type="text", text=self.reply)
        return CreateMessageResult(role="assistant", model=self.model, content=content, stop_reason="endTurn")


def fail_if_crashed(target: Target, result: Any, tool: str) -> None:
    """Turn a redacted crash into the student's real exception and where it happened."""
    if isinstance(result, CallToolResult) and result.is_error and first_line(result) == f"Error executing tool {tool}":
        crash = target.tool_crash()
        if crash:
            pytest.fail(f"{tool} crashed: {crash}")
        pytest.fail(f"{tool} crashed (the client saw only 'Error executing tool {tool}')")


def mcp_server(target: Target, name: str) -> Any:
    """An empty SDK server, made where the student's code runs, for it to register tools on."""
    return target.library("mcp.server.mcpserver").MCPServer(name, log_level="WARNING")


def new_server(target: Target, root: Path | None = None, limit: int | None = None) -> Any:
    """A server with this lesson's tools, built from the module's functions (register is checked on its own)."""
    sampling = target.module("sampling")
    server = mcp_server(target, f"desk-{random.randint(1000, 9999)}")
    server.tool()(sampling.summarise)
    if root is not None:
        server.tool(name="summarise_document")(sampling.document_summariser(root, limit))
    return server


def hand_in(target: Target, obj: Any) -> Any:
    """The SDK object `obj`, rebuilt where the student's code runs, so it can be passed to it."""
    kind = getattr(target.library("mcp.types"), type(obj).__name__)
    return kind.model_validate(obj.model_dump(mode="json", by_alias=True, exclude_unset=True))


def qualified(cls: type) -> str:
    """A class's full name, as `target.classes` reports it for a value from student code."""
    return f"{cls.__module__}.{cls.__qualname__}"


async def call_summarise(target: Target, client: Any, text: str, max_words: int,
                         tool: str = "summarise") -> CallToolResult:
    """Call a summarise tool; a protocol error or a crash becomes a failure that says what it means."""
    args: dict[str, Any] = {"name": text} if tool == "summarise_document" else {"text": text}
    args["max_words"] = max_words
    try:
        result = await client.call_tool(tool, args)
    except MCPError as exc:
        if exc.code == MISSING_REQUIRED_CLIENT_CAPABILITY:
            pytest.fail(f"{tool} failed with MCPError -32021 ({exc.message}): the server asked a question this "
                        "client never declared it can answer. Look at ctx.client_capabilities before asking.")
        pytest.fail(f"{tool} failed with a protocol error: MCPError {exc.code} {exc.message}")
    except RuntimeError as exc:
        pytest.fail(f"{tool} never finished: {exc}")
    fail_if_crashed(target, result, tool)
    return result


def structured(result: CallToolResult, tool: str = "summarise") -> dict[str, Any]:
    """The Summary a summarise tool returned; an error or another shape fails the check."""
    assert not result.is_error, f"{tool} returned an error: {first_line(result)}"
    data = result.structured_content
    assert isinstance(data, dict) and {"summary", "model", "fallback"} <= set(data), (
        f"{tool} should return a Summary (summary, model, fallback), got {data!r}")
    return data


def all_text(params: CreateMessageRequestParams, role: str | None = None) -> str:
    """Every text block of a sampling request's messages (of `role` only, when given)."""
    return "\n".join(block.text for message in params.messages if role in (None, message.role)
                     for block in message.content_as_list if block.type == "text")


@dataclass
class FakeModel:
    """A ChatModel for the student's callback: records prompts, answers or fails on demand.

    It stays in the check: the student's code is handed `fake_model`'s stand-in, whose
    `complete` calls back here, so what the model was asked is the check's own record.
    """

    rng: random.Random
    fail: Callable[[], BaseException] | None = None  # makes the exception to raise, in the student's process
    name: str = ""
    answered_by: str = ""
    text: str = ""
    stop_reason: str = ""
    prompts: list[Any] = field(default_factory=list)
    completion_type: Any = None

    def __post_init__(self) -> None:
        self.name = self.name or f"fake-{self.rng.randint(100, 999)}"
        self.answered_by = self.answered_by or f"{self.name}-{self.rng.choice(['mini', 'pro', 'lite'])}"
        self.text = self.text or " ".join(word(self.rng, 3) for _ in range(self.rng.randint(4, 10)))
        self.stop_reason = self.stop_reason or self.rng.choice(["endTurn", "maxTokens"])

    async def complete(self, prompt: Any) -> Any:
        self.prompts.append(prompt)
        if self.fail is not None:
            raise self.fail()
        return self.completion_type(text=self.text, model=self.answered_by, stop_reason=self.stop_reason)


def fake_model(target: Target, rng: random.Random, failure: str | None = None,
                reason: str = "", stop_reason: str = "") -> tuple[FakeModel, Any]:
    """A FakeModel with random answers (failing with `failure`(reason) if given), and the ChatModel the
    student's code is handed: an object there with the model's `name`, whose `complete` runs here."""
    error = target.attr("sampling", "ModelError") if failure == "ModelError" else ConnectionError
    want = FakeModel(rng, fail=(lambda: target.error(error, reason)) if failure else None,
                     completion_type=target.attr("sampling", "Completion"), stop_reason=stop_reason)
    model = target.library("types").SimpleNamespace(name=want.name, complete=target.expose(want.complete))
    return want, model


def short_name(names: list[str]) -> str:
    """The bare class name of the first of `target.classes`, for a failure message."""
    return names[0].rsplit(".", 1)[-1] if names else "nothing"


def sampling_callback_of(target: Target, callback: Any) -> Callable[..., Any]:
    """A client's sampling_callback that lets the student's `callback` answer, where the student's code runs.

    The request is rebuilt there from its JSON; the reply comes back as JSON and is rebuilt here.
    The student's callback gets no client context (None), as in the checks that call it directly.
    """

    async def sampling_callback(context: Any, params: CreateMessageRequestParams) -> CreateMessageResult | ErrorData:
        reply = await callback(None, hand_in(target, params))
        names = target.classes(reply)
        for kind in (CreateMessageResult, ErrorData):
            if qualified(kind) in names:
                return kind.model_validate(reply.model_dump(mode="json", by_alias=True, exclude_unset=True))
        raise TypeError(f"the sampling callback returned {short_name(names)}, not a CreateMessageResult or ErrorData")

    return sampling_callback


def random_params(rng: random.Random) -> tuple[CreateMessageRequestParams, dict[str, Any]]:
    """A sampling request with every optional field set, and what a prompt made from it must hold."""
    roles: list[Literal["user", "assistant"]] = ["user", "assistant"] * 3
    turns = [(role, random_passage(rng, 2)) for role in roles[: rng.choice([3, 5])]]
    # Never in sorted order (reverse order of distinct names), so code that sorts or dedupes them loses it.
    names = {f"{word(rng, 3)}-{rng.randint(1, 9)}" for _ in range(rng.randint(2, 3))}
    hints = sorted(names | {"zz-last"}, reverse=True)
    stop = sorted({f"<{word(rng, 3)}>" for _ in range(2)} | {"<zz>"}, reverse=True)
    expected: dict[str, Any] = {"system": random_passage(rng, 1), "turns": turns, "max_tokens": rng.randint(16, 900),
                "temperature": round(rng.uniform(0.05, 1.0), 2), "stop": stop, "hints": hints}
    params = CreateMessageRequestParams(
        messages=[SamplingMessage(role=role, content=TextContent(type="text", text=text)) for role, text in turns],
        system_prompt=expected["system"], max_tokens=expected["max_tokens"], temperature=expected["temperature"],
        stop_sequences=stop,
        model_preferences=ModelPreferences(hints=[ModelHint(name=h) for h in hints], cost_priority=rng.random()),
    )
    return params, expected


@dataclass
class Workspace:
    """Documents around a word limit, for the elicitation checks."""

    root: Path
    limit: int
    small: str     # well under the limit
    at_limit: str  # exactly `limit` words: still no question
    large: str     # one word over the limit: ask first
    words: dict[str, int]


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """Three documents around a random limit: well under it, exactly at it, and one word over it."""
    rng = random.Random()
    limit = rng.randint(30, 90)
    root = tmp_path / "workspace"
    (root / "notes").mkdir(parents=True)
    small, at_limit, large = f"notes/{word(rng, 3)}.md", f"notes/{word(rng, 3)}-full.md", f"{word(rng, 3)}-report.txt"
    sizes = {small: rng.randint(5, limit // 2), at_limit: limit, large: limit + 1}
    for name, words in sizes.items():
        (root / name).write_text(prose_of_words(rng, words))
    return Workspace(root, limit, small, at_limit, large, sizes)


def elicitation_answer(events: list[str], seen: list[str], content: dict[str, Any] | None,
                       action: Literal["accept", "decline", "cancel"] = "accept") -> Callable[..., Any]:
    """An elicitation callback that gives `action` and `content`, noting the question in `seen` and the
    turn in `events` (beside the fake model's "sample"), so a check can judge the order."""

    async def elicitation_callback(context: Any, params: Any) -> ElicitResult:
        events.append("elicit")
        seen.append(params.message)
        return ElicitResult(action=action, content=content)

    return elicitation_callback


def archive_server(target: Target, rng: random.Random) -> tuple[Any, Any, str]:
    """A server with search_archive over a fresh vault: (server, vault, service)."""
    sampling = target.module("sampling")
    service = f"{word(rng, 3)}{rng.randrange(10, 99)}"
    vault = sampling.CredentialVault(f"https://{word(rng, 3)}.example/{word(rng, 3)}")
    server = target.library("mcp.server.mcpserver").MCPServer(f"desk-{word(rng, 3)}", log_level="WARNING")
    sampling.register_archive(server, vault, service=service)
    return server, vault, service
