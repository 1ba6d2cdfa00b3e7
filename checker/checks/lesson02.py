"""Lesson 2 checks: a tool that borrows the client's model, degrades without it, and asks first.

Every run invents its own passage, reply, model name and word limits, so only code that really
forwards them passes. The checks play the client with their own callbacks (to see exactly what
the server asks for) and also drive the student's own sampling callback with fake models. No
network and no API key anywhere: the real-provider adapters are never called here.
"""

from __future__ import annotations

import math
import random
import string
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import MCPDeprecationWarning, MCPError
from mcp.types import (
    INTERNAL_ERROR,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolResult,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitResult,
    ErrorData,
    ImageContent,
    InputRequiredResult,
    ModelHint,
    ModelPreferences,
    SamplingMessage,
    TextContent,
)
from mcp.types import URL_ELICITATION_REQUIRED

from checker.marks import check
from checker.target import Target, leaf_exception

pytestmark = pytest.mark.anyio

MODES = {"auto": "2026-07-28", "legacy": "2025-11-25"}


def _word(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9)))


def _passage(rng: random.Random, sentences: int | None = None) -> str:
    out = []
    for _ in range(sentences or rng.randint(3, 8)):
        words = [_word(rng) for _ in range(rng.randint(4, 12))]
        out.append(" ".join(words).capitalize() + rng.choice([".", ".", "!", "?"]))
    return " ".join(out)


def _text_of_words(rng: random.Random, count: int) -> str:
    """Prose of exactly `count` whitespace-separated words, in sentences."""
    words = [_word(rng) for _ in range(count)]
    sentences = [words[start:start + 8] for start in range(0, count, 8)]
    return " ".join(" ".join(sentence).capitalize() + "." for sentence in sentences)


def _first_line(result: CallToolResult) -> str:
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
        self.reply = self.reply or " ".join(_word(self.rng) for _ in range(self.rng.randint(5, 12)))
        self.model = self.model or f"client-model-{self.rng.randint(1000, 9999)}"

    async def __call__(self, context: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
        self.seen.append(params)
        if self.events is not None:
            self.events.append("sample")
        content = self.content or TextContent(type="text", text=self.reply)
        return CreateMessageResult(role="assistant", model=self.model, content=content, stop_reason="endTurn")


def _fail_if_crashed(target: Target, result: Any, tool: str) -> None:
    """Turn a redacted crash into the student's real exception and where it happened."""
    if isinstance(result, CallToolResult) and result.is_error and _first_line(result) == f"Error executing tool {tool}":
        crash = target.tool_crash()
        if crash:
            pytest.fail(f"{tool} crashed: {crash}")
        pytest.fail(f"{tool} crashed (the client saw only 'Error executing tool {tool}')")


# --- what the student's code is handed, built where it runs (target.library) ---------------------


def _mcp_server(target: Target, name: str) -> Any:
    """An empty SDK server, made where the student's code runs, for it to register tools on."""
    return target.library("mcp.server.mcpserver").MCPServer(name, log_level="WARNING")


def _new_server(target: Target, root: Path | None = None, limit: int | None = None) -> Any:
    """A server with this lesson's tools, built from the module's functions (register is checked on its own)."""
    sampling = target.module("sampling")
    server = _mcp_server(target, f"desk-{random.randint(1000, 9999)}")
    server.tool()(sampling.summarise)
    if root is not None:
        server.tool(name="summarise_document")(sampling.document_summariser(root, limit))
    return server


def _hand_in(target: Target, obj: Any) -> Any:
    """The SDK object `obj`, rebuilt where the student's code runs, so it can be passed to it."""
    kind = getattr(target.library("mcp.types"), type(obj).__name__)
    return kind.model_validate(obj.model_dump(mode="json", by_alias=True, exclude_unset=True))


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


async def _summarise(target: Target, client: Any, text: str, max_words: int, tool: str = "summarise") -> CallToolResult:
    """Call a summarise tool; a protocol error or a crash becomes a failure that says what it means."""
    args = {"name": text} if tool == "summarise_document" else {"text": text}
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
    _fail_if_crashed(target, result, tool)
    return result


def _structured(result: CallToolResult, tool: str = "summarise") -> dict[str, Any]:
    assert not result.is_error, f"{tool} returned an error: {_first_line(result)}"
    data = result.structured_content
    assert isinstance(data, dict) and {"summary", "model", "fallback"} <= set(data), (
        f"{tool} should return a Summary (summary, model, fallback), got {data!r}")
    return data


def _all_text(params: CreateMessageRequestParams, role: str | None = None) -> str:
    return "\n".join(block.text for message in params.messages if role in (None, message.role)
                     for block in message.content_as_list if block.type == "text")


# --- server side -------------------------------------------------------------------------------


@check("the sampling request carries the passage, a system prompt, a sized budget and preferences",
       points=3,
       hint="Build Sample([...user message...], system_prompt=..., max_tokens=..., model_preferences=...). "
            "The client's user pays for every token you reserve, so derive max_tokens from max_words; "
            "ModelPreferences takes hints (model-name substrings) and cost/speed/intelligence priorities in 0..1.")
async def test_summary_request_shape(target: Target) -> None:
    rng = random.Random()
    passage = _passage(rng)
    small, large = rng.randint(10, 60), rng.randint(200, 400)
    fake = FakeClientModel(rng)
    async with target.client(_new_server(target), sampling_callback=fake) as client:
        for max_words in (small, large):
            await _summarise(target, client, passage, max_words)
    assert len(fake.seen) == 2, f"expected one sampling request per call (2), the client model was asked {len(fake.seen)} times"
    first, second = fake.seen
    user_text = _all_text(first, "user")
    assert passage in user_text, "the user message must contain the passage verbatim; the model never saw it"
    assert str(small) in user_text or str(small) in (first.system_prompt or ""), (
        f"the request never mentions the word limit ({small}): tell the model how long the summary may be")
    assert first.system_prompt and first.system_prompt.strip(), (
        "the request has no system_prompt: say what the desk wants (a plain summary, only from the document)")
    assert passage not in first.system_prompt, "the passage belongs in the user message, not in the system prompt"
    assert first.include_context in (None, "none"), (
        f"include_context={first.include_context!r}: asking the client to add other context is deprecated; leave it unset")
    for params, max_words in ((first, small), (second, large)):
        low, high = math.ceil(max_words * 5 / 4), 4 * max_words + 100
        assert params.max_tokens >= low, (
            f"max_tokens={params.max_tokens} for a {max_words}-word summary: a word is about 4/3 tokens, so the "
            f"budget needs at least {low} (1.25 tokens a word) or the summary is cut off. Words are not tokens")
        assert params.max_tokens <= high, (
            f"max_tokens={params.max_tokens} for a {max_words}-word summary: at most {high} (4 tokens a word plus "
            "100). Size the budget from max_words; never reserve tokens the user pays for needlessly")
    assert second.max_tokens > first.max_tokens, (
        f"max_tokens did not grow with max_words ({small} words -> {first.max_tokens}, {large} words -> {second.max_tokens})")
    prefs = first.model_preferences
    assert prefs is not None, "the request has no model_preferences: tell the client what kind of model suits a summary"
    assert prefs.hints and all(h.name for h in prefs.hints), "model_preferences needs hints with model names, e.g. small models"
    priorities = {"cost_priority": prefs.cost_priority, "speed_priority": prefs.speed_priority,
                  "intelligence_priority": prefs.intelligence_priority}
    unset = [name for name, value in priorities.items() if value is None or not 0 <= value <= 1]
    assert not unset, f"set {', '.join(unset)} to a number between 0 and 1"
    assert prefs.intelligence_priority < min(prefs.cost_priority, prefs.speed_priority), (
        f"a summary is a cheap, quick job, yet intelligence_priority={prefs.intelligence_priority} is not below "
        f"cost_priority={prefs.cost_priority} and speed_priority={prefs.speed_priority}")


@check("the client model's reply becomes the tool result in both protocol eras", points=3,
       hint="Annotate a tool parameter Annotated[CreateMessageResult, Resolve(resolver)]: the SDK fills it with the "
            "client's reply on 2026-07-28 (a retried call) and on legacy sessions (a pushed request). Read its text.")
async def test_reply_reaches_result_both_eras(target: Target) -> None:
    rng = random.Random()
    server = _new_server(target)
    for mode, version in MODES.items():
        fake = FakeClientModel(rng)
        passage = _passage(rng)
        async with target.client(server, mode=mode, sampling_callback=fake) as client:
            data = _structured(await _summarise(target, client, passage, rng.randint(20, 80)))
        assert len(fake.seen) == 1, f"on {version} the client model was asked {len(fake.seen)} times for one call, expected once"
        assert data["summary"] == fake.reply, (
            f"on {version} the summary should be the client model's reply {fake.reply!r}, got {data['summary']!r}")
        assert data["model"] == fake.model, (
            f"on {version} `model` should name the model the client reported ({fake.model!r}), got {data['model']!r}")
        assert data["fallback"] is False, f"on {version} a summary written by the client's model is not a fallback"


@check("without the sampling capability the tool falls back to a labelled extractive summary", points=3,
       hint="A resolver may return the finished value instead of the question: when ctx.client_capabilities has no "
            "sampling, return a CreateMessageResult built from extractive_summary() and labelled FALLBACK_MODEL.")
async def test_degrades_without_sampling(target: Target) -> None:
    rng = random.Random()
    server = _new_server(target)
    label = target.attr("sampling", "FALLBACK_MODEL")
    for mode, version in MODES.items():
        max_words = rng.randint(12, 30)
        passage = _passage(rng)
        while len(passage.split()) < 3 * max_words:  # so a fallback that ignores max_words is always too long
            passage += " " + _passage(rng)
        async with target.client(server, mode=mode) as client:
            data = _structured(await _summarise(target, client, passage, max_words))
        words = [w for w in data["summary"].split() if w != "…"]
        source = set(passage.split())
        assert words, f"on {version} the fallback summary is empty"
        assert data["fallback"] is True, f"on {version} the fallback summary must say so: fallback should be True"
        assert data["model"] == label, (
            f"on {version} the fallback's `model` should be FALLBACK_MODEL ({label!r}), saying who wrote it; got "
            f"{data['model']!r}")
        invented = [w for w in words if w not in source]
        assert not invented, f"on {version} the fallback should quote the passage, but {invented[:3]} are not in it"
        assert len(words) <= max_words, f"on {version} the fallback has {len(words)} words, more than max_words={max_words}"


@check("a reply with no usable text becomes a readable tool error", points=2,
       hint="The client decides what comes back: check the reply's content type and text before using it, and raise "
            "ToolError with a message that names the model, so the caller learns what went wrong.")
async def test_unusable_reply_is_tool_error(target: Target) -> None:
    rng = random.Random()
    server = _new_server(target)
    contents = [ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png"), TextContent(type="text", text="  ")]
    for mode, version in MODES.items():
        for content in rng.sample(contents, len(contents)):
            fake = FakeClientModel(rng, content=content)
            async with target.client(server, mode=mode, sampling_callback=fake) as client:
                result = await _summarise(target, client, _passage(rng), 40)
            what = "an image" if content.type == "image" else "blank text"
            assert result.is_error, f"on {version}, when the model replied with {what}, summarise should be a tool error"
            message = _first_line(result)
            assert fake.model in message, (
                f"on {version} the error for {what} reads {message!r}; name the model ({fake.model!r}) and say what it "
                "sent (a crash only shows 'Error executing tool summarise')")


@check("the sampling request renders identically on every round (2026-07-28)", points=3,
       hint="On 2026-07-28 resolvers run again when the client retries with the answer; if the request differs "
            "(a timestamp, a random id, a counter), the SDK treats it as a new question and asks again. Build it "
            "only from the tool's arguments and constants.")
async def test_request_stable_across_rounds(target: Target) -> None:
    rng = random.Random()
    fake = FakeClientModel(rng)
    args = {"text": _passage(rng), "max_words": rng.randint(20, 90)}
    async with target.client(_new_server(target), mode="2026-07-28", sampling_callback=fake) as client:
        rounds = []
        for _ in range(2):
            first = await client.session.call_tool("summarise", args, allow_input_required=True)
            _fail_if_crashed(target, first, "summarise")
            assert isinstance(first, InputRequiredResult), (
                "round 1 of a modern call should return InputRequiredResult carrying a sampling request, got "
                f"{type(first).__name__}: with a client that can sample, the resolver must return Sample(...)")
            rounds.append(first)
            await anyio.sleep(0.01)
        asked = [{k: r.model_dump(mode="json", by_alias=True, exclude_none=True) for k, r in one.input_requests.items()}
                 for one in rounds]
        assert all(len(a) == 1 for a in asked), f"expected one input request per round, got {[list(a) for a in asked]}"
        request = next(iter(rounds[0].input_requests.values()))
        assert isinstance(request, CreateMessageRequest), f"the input request should be sampling, got {type(request).__name__}"
        if asked[0] != asked[1]:
            one, two = (next(iter(a.values()))["params"] for a in asked)
            changed = sorted(k for k in set(one) | set(two) if one.get(k) != two.get(k))
            pytest.fail(f"two identical calls produced different sampling requests (fields {changed} changed): "
                        "something in the request varies from run to run")
        answers = {key: await fake(None, req.params) for key, req in rounds[0].input_requests.items()}
        second = await client.session.call_tool("summarise", args, input_responses=answers,
                                                request_state=rounds[0].request_state, allow_input_required=True)
    _fail_if_crashed(target, second, "summarise")
    assert not isinstance(second, InputRequiredResult), (
        "round 2 asked the client again instead of using its answer: the request rendered in round 2 differs from round 1")
    data = _structured(second)
    assert data["summary"] == fake.reply, f"round 2 should return the answered summary {fake.reply!r}, got {data['summary']!r}"


@check("the modern path uses no deprecated push call (no MCPDeprecationWarning)", points=2,
       hint="ctx.session.create_message is the 2025 push API: it warns, and it cannot work on a 2026-07-28 connection "
            "(no back-channel). Return Sample(...) from a resolver and let the SDK deliver it in either era.")
async def test_no_deprecated_calls(target: Target) -> None:
    rng = random.Random()
    server = _new_server(target)
    shown: list[tuple[str, Any]] = []

    def showwarning(message: Any, category: Any, *where: Any) -> None:
        """Every warning shown where the student's code runs comes here, to the check."""
        shown.append((str(message), category))

    for mode, version in MODES.items():
        fake = FakeClientModel(rng)
        shown.clear()
        with warnings.catch_warnings(record=True) as caught:  # the client's side
            warnings.simplefilter("always")
            served = target.library("warnings")  # the server's side, where the student's code runs
            served.simplefilter("always")
            served.showwarning = target.expose(showwarning)
            async with target.client(server, mode=mode, sampling_callback=fake) as client:
                result = await _summarise(target, client, _passage(rng), 40)
        deprecated = [str(w.message) for w in caught if issubclass(w.category, MCPDeprecationWarning)]
        deprecated += [message for message, category in shown
                       if isinstance(category, type) and issubclass(category, MCPDeprecationWarning)]
        assert not deprecated, f"on {version} summarise raised MCPDeprecationWarning: {deprecated[0]}"
        data = _structured(result)
        assert data["summary"] == fake.reply, f"on {version} the summary should be the client model's reply"


# --- client side -------------------------------------------------------------------------------


@dataclass
class FakeModel:
    """A ChatModel for the student's callback: records prompts, answers or fails on demand.

    It stays in the check: the student's code is handed `_fake_model`'s stand-in, whose
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
        self.text = self.text or " ".join(_word(self.rng) for _ in range(self.rng.randint(4, 10)))
        self.stop_reason = self.stop_reason or self.rng.choice(["endTurn", "maxTokens"])

    async def complete(self, prompt: Any) -> Any:
        self.prompts.append(prompt)
        if self.fail is not None:
            raise self.fail()
        return self.completion_type(text=self.text, model=self.answered_by, stop_reason=self.stop_reason)


def _fake_model(target: Target, rng: random.Random, failure: str | None = None,
                reason: str = "", stop_reason: str = "") -> tuple[FakeModel, Any]:
    """A FakeModel with random answers (failing with `failure`(reason) if given), and the ChatModel the
    student's code is handed: an object there with the model's `name`, whose `complete` runs here."""
    error = target.attr("sampling", "ModelError") if failure == "ModelError" else ConnectionError
    want = FakeModel(rng, fail=(lambda: target.error(error, reason)) if failure else None,
                     completion_type=target.attr("sampling", "Completion"), stop_reason=stop_reason)
    model = target.library("types").SimpleNamespace(name=want.name, complete=target.expose(want.complete))
    return want, model


def _short(names: list[str]) -> str:
    return names[0].rsplit(".", 1)[-1] if names else "nothing"


def _sampling_callback_of(target: Target, callback: Any) -> Callable[..., Any]:
    """A client's sampling_callback that lets the student's `callback` answer, where the student's code runs.

    The request is rebuilt there from its JSON; the reply comes back as JSON and is rebuilt here.
    The student's callback gets no client context (None), as in the checks that call it directly.
    """

    async def sampling_callback(context: Any, params: CreateMessageRequestParams) -> CreateMessageResult | ErrorData:
        reply = await callback(None, _hand_in(target, params))
        names = target.classes(reply)
        for kind in (CreateMessageResult, ErrorData):
            if _qualified(kind) in names:
                return kind.model_validate(reply.model_dump(mode="json", by_alias=True, exclude_unset=True))
        raise TypeError(f"the sampling callback returned {_short(names)}, not a CreateMessageResult or ErrorData")

    return sampling_callback


def _random_params(rng: random.Random) -> tuple[CreateMessageRequestParams, dict[str, Any]]:
    roles = ["user", "assistant"] * 3
    turns = [(role, _passage(rng, 2)) for role in roles[: rng.choice([3, 5])]]
    # Never in sorted order (reverse order of distinct names), so code that sorts or dedupes them loses it.
    hints = sorted({f"{_word(rng)}-{rng.randint(1, 9)}" for _ in range(rng.randint(2, 3))} | {"zz-last"}, reverse=True)
    stop = sorted({f"<{_word(rng)}>" for _ in range(2)} | {"<zz>"}, reverse=True)
    expected = {"system": _passage(rng, 1), "turns": turns, "max_tokens": rng.randint(16, 900),
                "temperature": round(rng.uniform(0.05, 1.0), 2), "stop": stop, "hints": hints}
    params = CreateMessageRequestParams(
        messages=[SamplingMessage(role=role, content=TextContent(type="text", text=text)) for role, text in turns],
        system_prompt=expected["system"], max_tokens=expected["max_tokens"], temperature=expected["temperature"],
        stop_sequences=stop,
        model_preferences=ModelPreferences(hints=[ModelHint(name=h) for h in hints], cost_priority=rng.random()),
    )
    return params, expected


@check("prompt_from_request keeps the whole request for the client's model", points=2,
       hint="Walk params.messages in order (content may be one block or a list: content_as_list), keep each role "
            "and its text, and copy system_prompt, max_tokens, temperature, stop_sequences and the hint names.")
async def test_prompt_from_request(target: Target) -> None:
    rng = random.Random()
    prompt_from_request = target.attr("sampling", "prompt_from_request")
    params, want = _random_params(rng)
    prompt = prompt_from_request(_hand_in(target, params))
    assert prompt.system == want["system"], f"system should be {want['system']!r}, got {prompt.system!r}"
    turns = [tuple(t) for t in prompt.turns]
    assert turns == [tuple(t) for t in want["turns"]], (
        f"turns should keep every message's role and text in order: expected {len(want['turns'])} turns "
        f"{[r for r, _ in want['turns']]}, got {[t[0] for t in turns]}")
    assert prompt.max_tokens == want["max_tokens"], f"max_tokens should be {want['max_tokens']}, got {prompt.max_tokens}"
    assert prompt.temperature == want["temperature"], f"temperature should be {want['temperature']}, got {prompt.temperature}"
    assert list(prompt.stop) == want["stop"], f"stop should be {want['stop']}, got {list(prompt.stop)}"
    assert list(prompt.hints) == want["hints"], f"hints should be the hint names in order {want['hints']}, got {list(prompt.hints)}"
    a, b = _word(rng), _word(rng)
    two_blocks = CreateMessageRequestParams(max_tokens=50, messages=[SamplingMessage(
        role="user", content=[TextContent(type="text", text=a), TextContent(type="text", text=b)])])
    (role, text), = prompt_from_request(_hand_in(target, two_blocks)).turns
    assert (role, text) == ("user", f"{a}\n{b}"), (
        f"a message with two text blocks ({a!r}, {b!r}) should become one turn, its texts joined by a newline in "
        f"order: expected {a + chr(10) + b!r}, got {text!r}")
    image = ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png")
    mixed = CreateMessageRequestParams(max_tokens=50, messages=[SamplingMessage(
        role="user", content=[image, TextContent(type="text", text=a)])])
    turns = [tuple(t) for t in prompt_from_request(_hand_in(target, mixed)).turns]
    assert turns == [("user", a)], (
        f"a message holding an image and the text {a!r} should keep its text ({[('user', a)]}), got {turns}: only a "
        "message with no text at all cannot be sent")
    bare = CreateMessageRequestParams(max_tokens=want["max_tokens"], messages=[SamplingMessage(
        role="user", content=TextContent(type="text", text=b))], model_preferences=ModelPreferences(cost_priority=0.5))
    prompt = prompt_from_request(_hand_in(target, bare))
    got = (prompt.system, prompt.temperature, list(prompt.stop), list(prompt.hints), prompt.max_tokens)
    assert got == (None, None, [], [], want["max_tokens"]), (
        "a request with no system prompt, temperature or stop sequences, and preferences without hints, should give "
        f"system=None, temperature=None, no stop and no hints (max_tokens {want['max_tokens']}); got {got}: every "
        "field but the messages and max_tokens is optional")
    image_only = CreateMessageRequestParams(max_tokens=50, messages=[SamplingMessage(role="user", content=image)])
    image_only_handed = _hand_in(target, image_only)
    model_error = target.attr("sampling", "ModelError")
    with pytest.raises(model_error):
        prompt_from_request(image_only_handed)
        pytest.fail("a message holding only an image cannot go to a text model: raise ModelError")


@check("the sampling callback answers with the model's completion", points=2,
       hint="Return CreateMessageResult(role='assistant', content=TextContent(...), model=..., stop_reason=...). "
            "Report the model that actually answered (the Completion says which), not the one you asked for.")
async def test_callback_replies_with_completion(target: Target) -> None:
    rng = random.Random()
    make_sampling_callback = target.attr("sampling", "make_sampling_callback")
    want, model = _fake_model(target, rng, stop_reason=rng.choice(["maxTokens", "stopSequence"]))
    params, expected = _random_params(rng)
    reply = await make_sampling_callback(model)(None, _hand_in(target, params))
    kind = target.classes(reply)
    assert _qualified(CreateMessageResult) in kind, f"the callback should return a CreateMessageResult, got {_short(kind)}"
    prompts = want.prompts
    assert len(prompts) == 1, f"the callback should ask the model once, it asked {len(prompts)} times"
    assert [tuple(t) for t in prompts[0].turns] == [tuple(t) for t in expected["turns"]], (
        "the model did not receive the request's messages: pass it prompt_from_request(params)")
    assert reply.role == "assistant", f"the reply's role should be 'assistant', got {reply.role!r}"
    content = reply.content
    assert content.type == "text" and content.text == want.text, (
        f"the reply should carry the model's text {want.text!r}, got {content!r}")
    assert reply.model == want.answered_by, (
        f"the reply names model {reply.model!r}; the completion says {want.answered_by!r} answered. The client picks "
        "the model, so it must report the one that really answered")
    assert reply.stop_reason == want.stop_reason, (
        f"stop_reason should be the completion's {want.stop_reason!r}, got {reply.stop_reason!r}")


@check("a failing model reaches the caller as a readable error, not a crash", points=3,
       hint="Catch the model's failure inside the callback and return ErrorData(code=INTERNAL_ERROR, message=...) "
            "that names the model and the reason. An exception that escapes the callback crashes the client instead.")
async def test_model_failure_is_readable(target: Target) -> None:
    rng = random.Random()
    make_sampling_callback = target.attr("sampling", "make_sampling_callback")
    params, _ = _random_params(rng)
    handed = _hand_in(target, params)
    for failure in ("ModelError", "ConnectionError"):
        reason = f"{_word(rng)} quota exhausted after {rng.randint(100, 999)} tokens"
        want, model = _fake_model(target, rng, failure, reason)
        callback = make_sampling_callback(model)
        try:
            reply = await callback(None, handed)
        except Exception as exc:  # noqa: BLE001
            if type(exc).__name__ != failure or str(exc) != reason:
                raise
            pytest.fail(f"the callback let the model's {failure}({reason!r}) escape; return ErrorData instead")
        kind = target.classes(reply)
        assert _qualified(ErrorData) in kind, f"for a failing model the callback should return ErrorData, got {_short(kind)}"
        message = reply.message
        assert reason in message and want.name in message, (
            f"the ErrorData message {message!r} should name the model ({want.name!r}) and the reason ({reason!r})")
        assert reply.code == INTERNAL_ERROR, f"the ErrorData code should be INTERNAL_ERROR ({INTERNAL_ERROR}), got {reply.code}"
    unreadable_params, _ = _random_params(rng)
    position = rng.randrange(len(unreadable_params.messages))
    unreadable_params.messages[position] = SamplingMessage(
        role=unreadable_params.messages[position].role,
        content=ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png"))
    want, model = _fake_model(target, rng)
    try:
        reply = await make_sampling_callback(model)(None, _hand_in(target, unreadable_params))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"message {position + 1} holds only an image, and the callback raised {type(exc).__name__}: "
                    f"{exc}. A request the model cannot read must come back as ErrorData, or the client crashes")
    kind = target.classes(reply)
    assert _qualified(ErrorData) in kind, (
        f"message {position + 1} holds only an image, which a text model cannot read: the callback should answer "
        f"ErrorData, it answered {_short(kind)}")
    assert want.name in reply.message, f"the ErrorData message {reply.message!r} should name the model {want.name!r}"
    assert not want.prompts, "the request could not be read, yet the model was asked anyway"
    server = _new_server(target)
    for mode, version in MODES.items():
        reason = f"{_word(rng)} is overloaded ({rng.randint(100, 999)})"
        _, model = _fake_model(target, rng, "ModelError", reason)
        callback = _sampling_callback_of(target, make_sampling_callback(model))
        async with target.client(server, mode=mode, sampling_callback=callback) as client:
            try:
                result = await client.call_tool("summarise", {"text": _passage(rng), "max_words": 30})
            except MCPError as exc:
                assert reason in exc.message, f"on {version} the caller got MCPError {exc.message!r}, which lost the reason {reason!r}"
            except Exception as exc:  # noqa: BLE001
                leaf = leaf_exception(exc)
                pytest.fail(f"on {version} the failing model crashed the client with {type(leaf).__name__}: {leaf}")
            else:
                _fail_if_crashed(target, result, "summarise")
                pytest.fail(f"on {version} the model failed, yet summarise returned a result: {_first_line(result)!r}")


@check("the student's callback and server work together in both eras", points=2,
       hint="Connect Client(server, sampling_callback=make_sampling_callback(model)): the model should see the "
            "desk's system prompt and the passage, and its answer should come back as the summary.")
async def test_callback_end_to_end(target: Target) -> None:
    rng = random.Random()
    make_sampling_callback = target.attr("sampling", "make_sampling_callback")
    server = _new_server(target)
    for mode, version in MODES.items():
        want, model = _fake_model(target, rng)
        passage = _passage(rng)
        callback = _sampling_callback_of(target, make_sampling_callback(model))
        async with target.client(server, mode=mode, sampling_callback=callback) as client:
            data = _structured(await _summarise(target, client, passage, rng.randint(20, 80)))
        prompts = want.prompts
        assert prompts, f"on {version} the model behind the callback was never asked"
        prompt = prompts[-1]
        assert prompt.system, f"on {version} the model never saw the desk's system prompt"
        assert any(passage in text for role, text in prompt.turns if role == "user"), (
            f"on {version} the model never saw the passage in a user turn")
        assert data["summary"] == want.text and data["model"] == want.answered_by, (
            f"on {version} expected the summary {want.text!r} by {want.answered_by!r}, got {data!r}")


# --- elicitation ---------------------------------------------------------------------------------


@dataclass
class Workspace:
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
    small, at_limit, large = f"notes/{_word(rng)}.md", f"notes/{_word(rng)}-full.md", f"{_word(rng)}-report.txt"
    sizes = {small: rng.randint(5, limit // 2), at_limit: limit, large: limit + 1}
    for name, words in sizes.items():
        (root / name).write_text(_text_of_words(rng, words))
    return Workspace(root, limit, small, at_limit, large, sizes)


def _answer(events: list[str], seen: list[str], content: dict[str, Any] | None,
            action: str = "accept") -> Callable[..., Any]:
    async def elicitation_callback(context: Any, params: Any) -> ElicitResult:
        events.append("elicit")
        seen.append(params.message)
        return ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    return elicitation_callback


@check("a large document is summarised only after the user agrees (elicitation first)", points=3,
       hint="Return Elicit(message, GoAhead) from the confirmation resolver when the document is over the limit; "
            "small documents need no question. Name the document and its word count so the user can decide.")
async def test_large_document_asks_first(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    server = _new_server(target, workspace.root, workspace.limit)
    for mode, version in MODES.items():
        events: list[str] = []
        messages: list[str] = []
        fake = FakeClientModel(rng, events=events)
        async with target.client(server, mode=mode, sampling_callback=fake,
                                 elicitation_callback=_answer(events, messages, {"proceed": True})) as client:
            for name in (workspace.small, workspace.at_limit):
                events.clear()
                small = _structured(await _summarise(target, client, name, 40, "summarise_document"), "summarise_document")
                assert events == ["sample"], (
                    f"on {version} a {workspace.words[name]}-word document (limit {workspace.limit}: up to and "
                    f"including the limit needs no question) should be summarised without a question; the client "
                    f"saw {events}")
                assert small["summary"] == fake.reply, f"on {version} the summary should be the model's reply"
            events.clear()
            large = _structured(await _summarise(target, client, workspace.large, 40, "summarise_document"), "summarise_document")
        assert large["summary"] == fake.reply, f"on {version} the summary should be the model's reply"
        assert events == ["elicit", "sample"], (
            f"on {version} a {workspace.words[workspace.large]}-word document (one over the limit "
            f"{workspace.limit}) should ask the user once, before any sampling; the client saw {events}")
        assert workspace.large in messages[0] and str(workspace.words[workspace.large]) in messages[0], (
            f"on {version} the question {messages[0]!r} should name {workspace.large!r} and its "
            f"{workspace.words[workspace.large]} words")
        for content, action in (({"proceed": False}, "accept"), (None, "decline")):
            events.clear()
            async with target.client(server, mode=mode, sampling_callback=FakeClientModel(rng, events=events),
                                     elicitation_callback=_answer(events, [], content, action)) as client:
                result = await _summarise(target, client, workspace.large, 40, "summarise_document")
            said = "declined" if action == "decline" else "answered proceed=false"
            assert result.is_error, f"on {version} the user {said}, yet summarise_document returned a summary"
            assert "sample" not in events, f"on {version} the user {said}, yet the document was still sent to the model"


@check("a client that cannot ask the user gets a clear refusal for a large document", points=2,
       hint="Check ctx.client_capabilities.elicitation before returning Elicit: a client without it would fail the "
            "call with -32021. Treat 'cannot ask' as 'no' for large documents; small ones need no question.")
async def test_large_document_without_elicitation(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    server = _new_server(target, workspace.root, workspace.limit)
    for mode, version in MODES.items():
        fake = FakeClientModel(rng)
        async with target.client(server, mode=mode, sampling_callback=fake) as client:
            small = await _summarise(target, client, workspace.small, 40, "summarise_document")
            asked_for_small = len(fake.seen)
            large = await _summarise(target, client, workspace.large, 40, "summarise_document")
        assert _structured(small, "summarise_document")["summary"] == fake.reply, (
            f"on {version} a small document needs no question and should be summarised")
        assert large.is_error, f"on {version} a large document was summarised although nobody could agree to it"
        assert workspace.large in _first_line(large), (
            f"on {version} the refusal {_first_line(large)!r} should name the document {workspace.large!r}")
        assert len(fake.seen) == asked_for_small, f"on {version} the large document was sent to the model anyway"


@check("register adds the summarise tools with titles, read-only hints and clean schemas", points=2,
       hint="server.tool(title=..., annotations=ToolAnnotations(read_only_hint=True)) for summarise, and for "
            "document_summariser(root, large_document_words) only when a root is given (a str or a Path): the "
            "limit register is handed is the one the tool uses. Resolved parameters never appear in the schema.")
async def test_tools_registered(target: Target, workspace: Workspace) -> None:
    register = target.attr("sampling", "register")
    bare_server, rooted_server = _mcp_server(target, "bare"), _mcp_server(target, "rooted")
    register(bare_server)
    register(rooted_server, root=str(workspace.root), large_document_words=workspace.limit)
    async with target.client(bare_server) as client:
        bare = {tool.name for tool in (await client.list_tools()).tools}
    assert "summarise" in bare, f"register(server) should add a `summarise` tool; the server lists {sorted(bare)}"
    assert "summarise_document" not in bare, "without a root there is no workspace: register summarise_document only with root="
    events: list[str] = []
    fake = FakeClientModel(random.Random(), events=events)
    async with target.client(rooted_server, sampling_callback=fake,
                             elicitation_callback=_answer(events, [], {"proceed": True})) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        asked = {}
        if "summarise_document" in tools:
            for name in (workspace.at_limit, workspace.large):
                events.clear()
                _structured(await _summarise(target, client, name, 40, "summarise_document"), "summarise_document")
                asked[name] = "elicit" in events
    expected = {"summarise": ({"text", "max_words"}, ["text"]), "summarise_document": ({"name", "max_words"}, ["name"])}
    for name, (properties, required) in expected.items():
        assert name in tools, f"register(server, root=...) should add {name!r}; the server lists {sorted(tools)}"
        tool = tools[name]
        props = set(tool.input_schema.get("properties", {}))
        assert props == properties, f"{name} should take exactly {sorted(properties)}, its schema shows {sorted(props)}"
        assert tool.input_schema.get("required") == required, f"{name} should require only {required}"
        assert tool.title, f"{name} needs a human title"
        assert tool.description, f"{name} needs a description"
        assert tool.annotations and tool.annotations.read_only_hint, f"{name} changes nothing: mark it read_only_hint=True"
    assert asked == {workspace.at_limit: False, workspace.large: True}, (
        f"register(server, root=..., large_document_words={workspace.limit}) was given a limit, yet documents of "
        f"{workspace.limit} and {workspace.limit + 1} words were asked about as {asked} (True = the user was asked): "
        "hand large_document_words on to the document tool instead of the default")


# --- URL-mode elicitation (issue 19): what must not pass through the client ---------------------
#
# Added after the checks above, which they do not touch. A real in-memory client calls the
# given `search_archive` tool (register_archive), which relies on the student's
# credential_or_ask. The vault's base URL and service name are random on every run.

def _archive(target: Target, rng: random.Random) -> tuple[Any, Any, str]:
    """A server with search_archive over a fresh vault: (server, vault, service)."""
    sampling = target.module("sampling")
    service = f"{_word(rng)}{rng.randrange(10, 99)}"
    vault = sampling.CredentialVault(f"https://{_word(rng)}.example/{_word(rng)}")
    server = target.library("mcp.server.mcpserver").MCPServer(f"desk-{_word(rng)}", log_level="WARNING")
    sampling.register_archive(server, vault, service=service)
    return server, vault, service


@check("a missing credential sends the user to the desk's page (URL mode), never a form", points=2,
       hint="An API key must not pass through the client. When the vault has no key and the client declared URL "
            "elicitation (client_capabilities.elicitation.url), raise UrlElicitationRequiredError with an "
            "ElicitRequestURLParams for the vault's connect page; once the page has stored the key, just use it.")
async def test_credential_by_url_not_by_form(target: Target) -> None:
    rng = random.Random()
    server, vault, service = _archive(target, rng)
    asked: list[Any] = []

    async def callback(context: Any, params: Any) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action="decline")

    query = _word(rng)
    for mode in MODES:
        async with target.client(server, mode=mode, elicitation_callback=callback) as client:
            try:
                result = await client.call_tool("search_archive", {"query": query})
            except MCPError as exc:
                error = exc.error
            else:
                pytest.fail(f"{mode}: with no key stored, search_archive answered "
                            f"{result.content[0].text if result.content else result!r}; a client that declared URL "
                            f"elicitation should get UrlElicitationRequiredError (-32042) pointing at the connect page")
        assert error.code == URL_ELICITATION_REQUIRED, (
            f"{mode}: the call failed with {error.code} {error.message!r}, expected URL_ELICITATION_REQUIRED (-32042)")
        wanted = (error.data or {}).get("elicitations") if isinstance(error.data, dict) else None
        assert isinstance(wanted, list) and len(wanted) == 1, f"{mode}: the error should carry one elicitation, got {error.data!r}"
        page = wanted[0]
        assert page.get("mode") == "url" and page.get("url") == vault.connect_url(service), (
            f"{mode}: the elicitation sends the user to {page.get('url')!r}, expected the vault's connect page "
            f"{vault.connect_url(service)!r}")
        assert page.get("elicitationId") == vault.elicitation_id(service), (
            f"{mode}: elicitationId {page.get('elicitationId')!r}; the page completes {vault.elicitation_id(service)!r}")
        assert service in page.get("message", ""), f"{mode}: the message {page.get('message')!r} does not name {service!r}"
    assert not asked, (
        f"the client was asked through its elicitation callback ({type(asked[0]).__name__}): a key typed into a form "
        "passes through the client. Send the user to the page instead")
    key = "".join(rng.choices(string.ascii_letters + string.digits, k=24))
    vault.store(service, key)   # what the connect page does once the user has typed the key there
    async with target.client(server, elicitation_callback=callback) as client:
        result = await client.call_tool("search_archive", {"query": query})
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert not result.is_error, f"with the key stored, search_archive still failed: {text}"
    assert key not in text and not asked, "the key came back to the client, or the client was asked again"


@check("a client without URL elicitation gets a tool error naming the page, not -32042", points=1,
       hint="Only a client that declared URL mode may get UrlElicitationRequiredError. Any other client gets an "
            "ordinary tool error (ToolError) whose text names the connect page, so the user can open it themselves.")
async def test_no_url_support_names_the_page(target: Target) -> None:
    rng = random.Random()
    server, vault, service = _archive(target, rng)
    for mode in MODES:
        async with target.client(server, mode=mode) as client:
            try:
                result = await client.call_tool("search_archive", {"query": _word(rng)})
            except MCPError as exc:
                pytest.fail(f"{mode}: a client that declared no elicitation got the protocol error {exc.error.code} "
                            f"{exc.error.message!r}: it cannot open pages, so answer with a tool error naming the page")
        text = " ".join(getattr(block, "text", "") for block in result.content)
        assert result.is_error, f"{mode}: with no key stored, search_archive answered {text!r} instead of an error"
        assert vault.connect_url(service) in text, (
            f"{mode}: the error {text!r} does not name the connect page {vault.connect_url(service)!r}")
