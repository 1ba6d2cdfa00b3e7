"""Lesson 2 checks: a tool that borrows the client's model, degrades without it, and registers cleanly.

Every run invents its own passage, reply, model name and word limits, so only code that really
forwards them passes. The checks play the client with their own callbacks, to see exactly what
the server asks for. The client's half (the sampling callback) is checked in
`lesson02_callback.py`, asking the user first (elicitation) in `lesson02_elicitation.py`; the
fakes and servers they share are in `support/lesson02.py`.
"""

from __future__ import annotations

import math
import random
import warnings
from typing import Any

import anyio
import pytest
from mcp import MCPDeprecationWarning
from mcp.types import (
    CreateMessageRequest,
    ImageContent,
    InputRequiredResult,
    TextContent,
)

from checker.checks.kit.eras import MODES
from checker.checks.support.lesson02 import (
    FakeClientModel,
    Workspace,
    all_text,
    call_summarise,
    elicitation_answer,
    fail_if_crashed,
    first_line,
    mcp_server,
    new_server,
    random_passage,
    structured,
)
from checker.checks.support.lesson02 import workspace as workspace  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("the sampling request carries the passage, a system prompt, a sized budget and preferences",
       points=3,
       hint="Build Sample([...user message...], system_prompt=..., max_tokens=..., model_preferences=...). "
            "The client's user pays for every token you reserve, so derive max_tokens from max_words; "
            "ModelPreferences takes hints (model-name substrings) and cost/speed/intelligence priorities in 0..1.")
async def test_summary_request_shape(target: Target) -> None:
    rng = random.Random()
    passage = random_passage(rng)
    small, large = rng.randint(10, 60), rng.randint(200, 400)
    fake = FakeClientModel(rng)
    async with target.client(new_server(target), sampling_callback=fake) as client:
        for max_words in (small, large):
            await call_summarise(target, client, passage, max_words)
    assert len(fake.seen) == 2, (
        f"expected one sampling request per call (2), the client model was asked {len(fake.seen)} times")
    first, second = fake.seen
    user_text = all_text(first, "user")
    assert passage in user_text, "the user message must contain the passage verbatim; the model never saw it"
    assert str(small) in user_text or str(small) in (first.system_prompt or ""), (
        f"the request never mentions the word limit ({small}): tell the model how long the summary may be")
    assert first.system_prompt and first.system_prompt.strip(), (
        "the request has no system_prompt: say what the desk wants (a plain summary, only from the document)")
    assert passage not in first.system_prompt, "the passage belongs in the user message, not in the system prompt"
    assert first.include_context in (None, "none"), (
        f"include_context={first.include_context!r}: asking the client to add other context is deprecated; leave it "
        "unset")
    for params, max_words in ((first, small), (second, large)):
        low, high = math.ceil(max_words * 5 / 4), 4 * max_words + 100
        assert params.max_tokens >= low, (
            f"max_tokens={params.max_tokens} for a {max_words}-word summary: a word is about 4/3 tokens, so the "
            f"budget needs at least {low} (1.25 tokens a word) or the summary is cut off. Words are not tokens")
        assert params.max_tokens <= high, (
            f"max_tokens={params.max_tokens} for a {max_words}-word summary: at most {high} (4 tokens a word plus "
            "100). Size the budget from max_words; never reserve tokens the user pays for needlessly")
    assert second.max_tokens > first.max_tokens, (
        f"max_tokens did not grow with max_words ({small} words -> {first.max_tokens}, {large} words -> "
        f"{second.max_tokens})")
    prefs = first.model_preferences
    assert prefs is not None, "the request has no model_preferences: tell the client what kind of model suits a summary"
    assert prefs.hints and all(h.name for h in prefs.hints), (
        "model_preferences needs hints with model names, e.g. small models")
    priorities = {"cost_priority": prefs.cost_priority, "speed_priority": prefs.speed_priority,
                  "intelligence_priority": prefs.intelligence_priority}
    given = {name: value for name, value in priorities.items() if value is not None and 0 <= value <= 1}
    unset = [name for name in priorities if name not in given]
    assert not unset, f"set {', '.join(unset)} to a number between 0 and 1"
    assert given["intelligence_priority"] < min(given["cost_priority"], given["speed_priority"]), (
        f"a summary is a cheap, quick job, yet intelligence_priority={prefs.intelligence_priority} is not below "
        f"cost_priority={prefs.cost_priority} and speed_priority={prefs.speed_priority}")


@check("the client model's reply becomes the tool result in both protocol eras", points=3,
       hint="Annotate a tool parameter Annotated[CreateMessageResult, Resolve(resolver)]: the SDK fills it with the "
            "client's reply on 2026-07-28 (a retried call) and on legacy sessions (a pushed request). Read its text.")
async def test_reply_reaches_result_both_eras(target: Target) -> None:
    rng = random.Random()
    server = new_server(target)
    for mode, version in MODES.items():
        fake = FakeClientModel(rng)
        passage = random_passage(rng)
        async with target.client(server, mode=mode, sampling_callback=fake) as client:
            data = structured(await call_summarise(target, client, passage, rng.randint(20, 80)))
        assert len(fake.seen) == 1, (
            f"on {version} the client model was asked {len(fake.seen)} times for one call, expected once")
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
    server = new_server(target)
    label = target.attr("sampling", "FALLBACK_MODEL")
    for mode, version in MODES.items():
        max_words = rng.randint(12, 30)
        passage = random_passage(rng)
        while len(passage.split()) < 3 * max_words:  # so a fallback that ignores max_words is always too long
            passage += " " + random_passage(rng)
        async with target.client(server, mode=mode) as client:
            data = structured(await call_summarise(target, client, passage, max_words))
        words = [w for w in data["summary"].split() if w != "…"]
        source = set(passage.split())
        assert words, f"on {version} the fallback summary is empty"
        assert data["fallback"] is True, f"on {version} the fallback summary must say so: fallback should be True"
        assert data["model"] == label, (
            f"on {version} the fallback's `model` should be FALLBACK_MODEL ({label!r}), saying who wrote it; got "
            f"{data['model']!r}")
        invented = [w for w in words if w not in source]
        assert not invented, f"on {version} the fallback should quote the passage, but {invented[:3]} are not in it"
        assert len(words) <= max_words, (
            f"on {version} the fallback has {len(words)} words, more than max_words={max_words}")


@check("a reply with no usable text becomes a readable tool error", points=2,
       hint="The client decides what comes back: check the reply's content type and text before using it, and raise "
            "ToolError with a message that names the model, so the caller learns what went wrong.")
async def test_unusable_reply_is_tool_error(target: Target) -> None:
    rng = random.Random()
    server = new_server(target)
    image = ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png")
    contents: list[ImageContent | TextContent] = [image, TextContent(type="text", text="  ")]
    for mode, version in MODES.items():
        for content in rng.sample(contents, len(contents)):
            fake = FakeClientModel(rng, content=content)
            async with target.client(server, mode=mode, sampling_callback=fake) as client:
                result = await call_summarise(target, client, random_passage(rng), 40)
            what = "an image" if content.type == "image" else "blank text"
            assert result.is_error, (
                f"on {version}, when the model replied with {what}, summarise should be a tool error")
            message = first_line(result)
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
    args = {"text": random_passage(rng), "max_words": rng.randint(20, 90)}
    async with target.client(new_server(target), mode="2026-07-28", sampling_callback=fake) as client:
        rounds = []
        for _ in range(2):
            first = await client.session.call_tool("summarise", args, allow_input_required=True)
            fail_if_crashed(target, first, "summarise")
            assert isinstance(first, InputRequiredResult), (
                "round 1 of a modern call should return InputRequiredResult carrying a sampling request, got "
                f"{type(first).__name__}: with a client that can sample, the resolver must return Sample(...)")
            rounds.append(first)
            await anyio.sleep(0.01)
        asked = [{k: r.model_dump(mode="json", by_alias=True, exclude_none=True)
                  for k, r in (one.input_requests or {}).items()} for one in rounds]
        assert all(len(a) == 1 for a in asked), f"expected one input request per round, got {[list(a) for a in asked]}"
        (key, request), = (rounds[0].input_requests or {}).items()
        assert isinstance(request, CreateMessageRequest), (
            f"the input request should be sampling, got {type(request).__name__}")
        if asked[0] != asked[1]:
            one, two = (next(iter(a.values()))["params"] for a in asked)
            changed = sorted(k for k in set(one) | set(two) if one.get(k) != two.get(k))
            pytest.fail(f"two identical calls produced different sampling requests (fields {changed} changed): "
                        "something in the request varies from run to run")
        answers = {key: await fake(None, request.params)}
        second = await client.session.call_tool("summarise", args, input_responses=answers,
                                                request_state=rounds[0].request_state, allow_input_required=True)
    fail_if_crashed(target, second, "summarise")
    assert not isinstance(second, InputRequiredResult), (
        "round 2 asked the client again instead of using its answer: the request rendered in round 2 differs from "
        "round 1")
    data = structured(second)
    assert data["summary"] == fake.reply, (
        f"round 2 should return the answered summary {fake.reply!r}, got {data['summary']!r}")


@check("the modern path uses no deprecated push call (no MCPDeprecationWarning)", points=2,
       hint="ctx.session.create_message is the 2025 push API: it warns, and it cannot work on a 2026-07-28 connection "
            "(no back-channel). Return Sample(...) from a resolver and let the SDK deliver it in either era.")
async def test_no_deprecated_calls(target: Target) -> None:
    rng = random.Random()
    server = new_server(target)
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
                result = await call_summarise(target, client, random_passage(rng), 40)
        deprecated = [str(w.message) for w in caught if issubclass(w.category, MCPDeprecationWarning)]
        deprecated += [message for message, category in shown
                       if isinstance(category, type) and issubclass(category, MCPDeprecationWarning)]
        assert not deprecated, f"on {version} summarise raised MCPDeprecationWarning: {deprecated[0]}"
        data = structured(result)
        assert data["summary"] == fake.reply, f"on {version} the summary should be the client model's reply"


@check("register adds the summarise tools with titles, read-only hints and clean schemas", points=2,
       hint="server.tool(title=..., annotations=ToolAnnotations(read_only_hint=True)) for summarise, and for "
            "document_summariser(root, large_document_words) only when a root is given (a str or a Path): the "
            "limit register is handed is the one the tool uses. Resolved parameters never appear in the schema.")
async def test_tools_registered(target: Target, workspace: Workspace) -> None:
    register = target.attr("sampling", "register")
    bare_server, rooted_server = mcp_server(target, "bare"), mcp_server(target, "rooted")
    register(bare_server)
    register(rooted_server, root=str(workspace.root), large_document_words=workspace.limit)
    async with target.client(bare_server) as client:
        bare = {tool.name for tool in (await client.list_tools()).tools}
    assert "summarise" in bare, f"register(server) should add a `summarise` tool; the server lists {sorted(bare)}"
    assert "summarise_document" not in bare, (
        "without a root there is no workspace: register summarise_document only with root=")
    events: list[str] = []
    fake = FakeClientModel(random.Random(), events=events)
    async with target.client(rooted_server, sampling_callback=fake,
                             elicitation_callback=elicitation_answer(events, [], {"proceed": True})) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        asked = {}
        if "summarise_document" in tools:
            for name in (workspace.at_limit, workspace.large):
                events.clear()
                structured(await call_summarise(target, client, name, 40, "summarise_document"), "summarise_document")
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
        assert tool.annotations and tool.annotations.read_only_hint, (
            f"{name} changes nothing: mark it read_only_hint=True")
    assert asked == {workspace.at_limit: False, workspace.large: True}, (
        f"register(server, root=..., large_document_words={workspace.limit}) was given a limit, yet documents of "
        f"{workspace.limit} and {workspace.limit + 1} words were asked about as {asked} (True = the user was asked): "
        "hand large_document_words on to the document tool instead of the default")
