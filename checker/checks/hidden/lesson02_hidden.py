"""Lesson 2, instructor-only checks: the visible requirements again, with inputs the student never saw.

Left out of the student release and run by `course grade`. Each re-tests what a visible check
already enforces (the limit is inclusive, register hands on its root and limit, the callback
copes with bare requests and refuses unreadable ones) with other limits, sizes, models and
request shapes, so hard-coding the visible cases loses these points and understanding does not.
Expected answers are computed here from what the check made.
"""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any, Literal

import pytest
from mcp import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    CallToolResult,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitResult,
    ErrorData,
    ImageContent,
    ModelPreferences,
    SamplingMessage,
    TextContent,
)

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import word
from checker.checks.support.lesson02 import first_line, hand_in, mcp_server, qualified
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


def _uneven_prose(rng: random.Random, count: int) -> str:
    """Prose of exactly `count` whitespace-separated words, in sentences of 4 to 12 words (the visible
    checks' documents have sentences of eight)."""
    words = [word(rng, 3) for _ in range(count)]
    sentences, start = [], 0
    while start < count:
        size = rng.randint(4, 12)
        sentence = words[start:start + size]
        sentences.append(" ".join(sentence).capitalize() + ".")
        start += size
    return " ".join(sentences)


class _ClientSide:
    """The check's own client: records what it was asked, agrees to every question, answers every sample."""

    def __init__(self, rng: random.Random) -> None:
        self.events: list[str] = []
        self.questions: list[str] = []
        self.reply = " ".join(word(rng, 3) for _ in range(rng.randint(5, 10)))
        self.model = f"client-model-{rng.randint(1000, 9999)}"

    async def sample(self, context: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
        self.events.append("sample")
        return CreateMessageResult(role="assistant", model=self.model,
                                   content=TextContent(type="text", text=self.reply), stop_reason="endTurn")

    async def elicit(self, context: Any, params: Any) -> ElicitResult:
        self.events.append("elicit")
        self.questions.append(params.message)
        return ElicitResult(action="accept", content={"proceed": True})


async def _summarise_document(target: Target, client: Any, name: str, version: str) -> CallToolResult:
    try:
        result = await client.call_tool("summarise_document", {"name": name, "max_words": 40})
    except MCPError as exc:
        pytest.fail(f"on {version} summarise_document({name!r}) failed with a protocol error: MCPError {exc.code} "
                    f"{exc.message}")
    if result.is_error and first_line(result) == "Error executing tool summarise_document":
        crash = target.tool_crash()
        pytest.fail(f"on {version} summarise_document({name!r}) crashed: {crash or 'no detail'}")
    assert not result.is_error, f"on {version} summarise_document({name!r}) returned an error: {first_line(result)}"
    return result


# --- what the student's code is handed, built where it runs (target.library) ---------------------


def _document_server(target: Target, name: str, root: Path, limit: int) -> Any:
    """A server whose summarise_document is built by the module's document_summariser(root, limit)."""
    server = mcp_server(target, name)
    server.tool(name="summarise_document")(target.module("sampling").document_summariser(root, limit))
    return server


def _registered_server(target: Target, name: str, root: str, limit: int) -> Any:
    """A server set up only by the student's register(server, root=<a str>, large_document_words=limit)."""
    server = mcp_server(target, name)
    target.module("sampling").register(server, root=root, large_document_words=limit)
    return server


class RecordingModel:
    """A ChatModel for the student's callback: records every prompt and answers with a fixed completion.

    It stays in the check: `_recording_model` hands the student's code a stand-in whose
    `complete` calls back here, so what the model was asked is the check's own record.
    """

    def __init__(self, completion_type: Any, name: str, answered_by: str, text: str) -> None:
        self.completion_type, self.name, self.answered_by, self.text = completion_type, name, answered_by, text
        self.prompts: list[Any] = []

    async def complete(self, prompt: Any) -> Any:
        self.prompts.append(prompt)
        return self.completion_type(text=self.text, model=self.answered_by, stop_reason="endTurn")


def _recording_model(target: Target, completion_type: Any, name: str, answered_by: str,
                     text: str) -> tuple[RecordingModel, Any]:
    """The check's RecordingModel, and the ChatModel the student's code gets: its name, and its complete()."""
    model = RecordingModel(completion_type, name, answered_by, text)
    return model, target.library("types").SimpleNamespace(name=name, complete=target.expose(model.complete))


# --- the checks ------------------------------------------------------------------------------------


@check("a document of exactly the limit needs no question; one word more does", points=1,
       hint="The limit is the largest size that may be sent without asking: compare the word count with it so "
            "that a document of exactly `limit` words is summarised directly and only longer ones need a go-ahead.")
async def test_limit_is_inclusive(target: Target, tmp_path: Path) -> None:
    rng = random.Random()
    limit = rng.randint(20, 80)
    root = tmp_path / f"desk-{word(rng, 3)}"
    (root / "notes").mkdir(parents=True)
    at_limit, over = f"notes/{word(rng, 3)}-{rng.randint(1, 99)}.md", f"{word(rng, 3)}-{rng.randint(100, 999)}.txt"
    sizes = {at_limit: limit, over: limit + 1}
    for name, words in sizes.items():
        (root / name).write_text(_uneven_prose(rng, words))
    server = _document_server(target, f"desk-{rng.randint(1000, 9999)}", root, limit)
    for mode, version in MODES.items():
        client_side = _ClientSide(rng)
        async with target.client(server, mode=mode, sampling_callback=client_side.sample,
                                 elicitation_callback=client_side.elicit) as client:
            await _summarise_document(target, client, at_limit, version)
            assert client_side.events == ["sample"], (
                f"on {version} a document of exactly {limit} words with limit={limit} should be summarised without "
                f"a question (the limit itself is still allowed); the client saw {client_side.events}")
            client_side.events.clear()
            data = (await _summarise_document(target, client, over, version)).structured_content or {}
        assert client_side.events == ["elicit", "sample"], (
            f"on {version} a document of {limit + 1} words, one over limit={limit}, should ask the user once before "
            f"sampling; the client saw {client_side.events}")
        assert data.get("summary") == client_side.reply, (
            f"on {version} after the user agreed, the summary should be the client model's reply "
            f"{client_side.reply!r}, got {data!r}")


@check("register passes its root and large_document_words on to summarise_document", points=1,
       hint="register(server, root=..., large_document_words=N) is how a deployment sets its own limit, and root may "
            "be given as a str: hand both to the document tool rather than falling back to the defaults.")
async def test_register_forwards_root_and_limit(target: Target, tmp_path: Path) -> None:
    rng = random.Random()
    limit = rng.randint(8, 40)
    root = tmp_path / f"workspace-{word(rng, 3)}"
    (root / "papers").mkdir(parents=True)
    small, large = f"papers/{word(rng, 3)}.md", f"{word(rng, 3)}-{rng.randint(1, 99)}.txt"
    sizes = {small: rng.randint(3, limit), large: limit + rng.randint(2, 40)}
    for name, words in sizes.items():
        (root / name).write_text(_uneven_prose(rng, words))
    server = _registered_server(target, f"desk-{rng.randint(1000, 9999)}", str(root), limit)
    for mode, version in MODES.items():
        client_side = _ClientSide(rng)
        async with target.client(server, mode=mode, sampling_callback=client_side.sample,
                                 elicitation_callback=client_side.elicit) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert "summarise_document" in tools, (
                f"register(server, root={str(root)!r}) with the root as a str should add summarise_document; the "
                f"server lists {sorted(tools)}")
            small_data = (await _summarise_document(target, client, small, version)).structured_content or {}
            assert client_side.events == ["sample"], (
                f"on {version} with large_document_words={limit}, a {sizes[small]}-word document should be "
                f"summarised without a question; the client saw {client_side.events}")
            client_side.events.clear()
            large_data = (await _summarise_document(target, client, large, version)).structured_content or {}
        assert client_side.events == ["elicit", "sample"], (
            f"on {version} register(..., large_document_words={limit}) was given, yet a {sizes[large]}-word document "
            f"went out with {'no question' if 'elicit' not in client_side.events else client_side.events}: the tool "
            f"is not using the limit register was handed (the default is far larger)")
        assert large in client_side.questions[0] and str(sizes[large]) in client_side.questions[0], (
            f"on {version} the question {client_side.questions[0]!r} should name {large!r} and its {sizes[large]} "
            "words")
        for name, data in ((small, small_data), (large, large_data)):
            assert data.get("summary") == client_side.reply, (
                f"on {version} summarise_document({name!r}) should return the client model's reply "
                f"{client_side.reply!r}, got {data!r}")


@check("the sampling callback copes with bare requests and refuses unreadable ones with ErrorData", points=1,
       hint="Everything but the messages and max_tokens is optional in a sampling request (no system prompt, no "
            "preferences, preferences without hints). And a request the model cannot read is a failure like any "
            "other: the callback answers with ErrorData (INTERNAL_ERROR) naming the model, and never raises.")
async def test_callback_bare_and_unreadable_requests(target: Target) -> None:
    rng = random.Random()
    make_sampling_callback = target.attr("sampling", "make_sampling_callback")
    completion_type = target.attr("sampling", "Completion")

    bare_kinds = {
        "no system prompt, preferences, temperature or stop sequences": None,
        "preferences with priorities but no hints": ModelPreferences(cost_priority=round(rng.random(), 2),
                                                                     speed_priority=round(rng.random(), 2)),
    }
    for what, preferences in bare_kinds.items():
        name = f"local-{rng.randint(100, 999)}"
        answered_by, answer = f"{name}-{word(rng, 3)}", " ".join(word(rng, 3) for _ in range(rng.randint(4, 9)))
        question, max_tokens = " ".join(word(rng, 3) for _ in range(rng.randint(5, 15))), rng.randint(16, 900)
        extra: dict[str, Any] = {"model_preferences": preferences} if preferences is not None else {}
        params = CreateMessageRequestParams(
            max_tokens=max_tokens,
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=question))], **extra)
        recorded, model = _recording_model(target, completion_type, name, answered_by, answer)
        reply = await make_sampling_callback(model)(None, hand_in(target, params))
        kind = target.classes(reply)
        if qualified(CreateMessageResult) not in kind:
            detail = f": {reply.message}" if qualified(ErrorData) in kind else ""
            pytest.fail(f"a request with {what} is valid, yet the callback answered {kind[0].rsplit('.', 1)[-1]}"
                        f"{detail}; optional fields may be missing (None)")
        assert reply.content.type == "text" and reply.content.text == answer, (
            f"for a request with {what} the reply should carry the model's text {answer!r}, got {reply.content!r}")
        prompts = recorded.prompts
        assert len(prompts) == 1, (
            f"for a request with {what} the model should be asked once, it was asked {len(prompts)} times")
        prompt = prompts[0]
        assert [tuple(t) for t in prompt.turns] == [("user", question)], (
            f"for a request with {what} the model should see the one user turn {question!r}, got {prompt.turns!r}")
        assert prompt.max_tokens == max_tokens, f"max_tokens should be {max_tokens}, got {prompt.max_tokens}"
        assert prompt.system is None and prompt.temperature is None, (
            f"the request set no system prompt and no temperature: expected None for both, got system="
            f"{prompt.system!r}, temperature={prompt.temperature!r}")
        assert list(prompt.stop) == [] and list(prompt.hints) == [], (
            f"the request has no stop sequences and no hints: expected both empty, got stop={list(prompt.stop)}, "
            f"hints={list(prompt.hints)}")

    name = f"reader-{rng.randint(100, 999)}"
    recorded, model = _recording_model(target, completion_type, name, f"{name}-x", word(rng, 3))
    turns: list[Literal["user", "assistant"]] = ["user", "assistant", "user", "assistant", "user"]
    roles = turns[: rng.choice([3, 5])]
    messages = [SamplingMessage(role=role, content=TextContent(type="text", text=_uneven_prose(rng, rng.randint(3, 9))))
                for role in roles]
    position = rng.randrange(len(messages))
    messages[position] = SamplingMessage(role=roles[position], content=ImageContent(
        type="image", data="iVBORw0KGgo=", mime_type="image/png"))
    unreadable = CreateMessageRequestParams(max_tokens=rng.randint(50, 300), messages=messages)
    handed = hand_in(target, unreadable)
    try:
        reply = await make_sampling_callback(model)(None, handed)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"message {position + 1} of {len(messages)} holds only an image, and the callback raised "
                    f"{type(exc).__name__}: {exc}. A request the model cannot read must come back as ErrorData, "
                    "or the client crashes")
    kind = target.classes(reply)
    assert qualified(ErrorData) in kind, (
        f"message {position + 1} of {len(messages)} holds only an image, which a text model cannot read; the callback "
        f"should answer ErrorData, it answered {kind[0].rsplit('.', 1)[-1]}")
    code, message = reply.code, reply.message
    assert code == INTERNAL_ERROR, f"the ErrorData code should be INTERNAL_ERROR ({INTERNAL_ERROR}), got {code}"
    assert name in message, f"the ErrorData message {message!r} should name the client's model ({name!r})"
    asked = len(recorded.prompts)
    assert asked == 0, f"the request could not be read, yet the model was asked {asked} time(s)"


# --- URL-mode elicitation (issue 19): the visible requirements with other vaults ------------------

@check("credential_or_ask with another vault: a key for another service does not count", points=1,
       hint="The key is looked up for this service only; without it, a client that declared URL mode is sent to "
            "this service's connect page (-32042), any other client gets a tool error naming that page.")
async def test_credential_per_service(target: Target) -> None:
    from mcp.types import URL_ELICITATION_REQUIRED

    rng = random.Random()
    sampling = target.module("sampling")
    service, other = f"{word(rng, 3)}-{word(rng, 3)}", f"{word(rng, 3)}-x"
    vault = sampling.CredentialVault(f"http://127.0.0.1:{rng.randrange(2000, 60000)}/desk/")
    vault.store(other, "".join(rng.choices(string.ascii_letters, k=32)))
    server = target.library("mcp.server.mcpserver").MCPServer(f"desk-{word(rng, 3)}", log_level="WARNING")
    sampling.register_archive(server, vault, service=service)

    async def decline(context: Any, params: Any) -> ElicitResult:
        return ElicitResult(action="decline")

    async with target.client(server, elicitation_callback=decline) as client:
        try:
            await client.call_tool("search_archive", {"query": word(rng, 3)})
        except MCPError as exc:
            error = exc.error
        else:
            pytest.fail(f"a key stored for {other!r} let the call for {service!r} through")
    assert error.code == URL_ELICITATION_REQUIRED, f"expected -32042, got {error.code} {error.message!r}"
    page = error.data["elicitations"][0]
    assert page["url"] == vault.connect_url(service), (
        f"sent to {page['url']!r}, expected {vault.connect_url(service)!r}")
    async with target.client(server, mode="legacy") as client:
        result = await client.call_tool("search_archive", {"query": word(rng, 3)})
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert result.is_error and vault.connect_url(service) in text, f"a client without elicitation got {text!r}"
    vault.store(service, "".join(rng.choices(string.ascii_letters, k=40)))
    async with target.client(server) as client:
        result = await client.call_tool("search_archive", {"query": word(rng, 3)})
    assert not result.is_error, "with this service's key stored, the call still failed"
