"""Lesson 2 checks, the client's half: the sampling callback that lends a model to servers.

The checks drive the student's own callback with fake models (`support/lesson02.py`) and random
requests, and then connect it to a server. No network and no API key: the real-provider adapters
are never called here.
"""

from __future__ import annotations

import random

import pytest
from mcp import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    CreateMessageRequestParams,
    CreateMessageResult,
    ErrorData,
    ImageContent,
    ModelPreferences,
    SamplingMessage,
    TextContent,
)

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import word
from checker.checks.support.lesson02 import (
    call_summarise,
    fail_if_crashed,
    fake_model,
    first_line,
    hand_in,
    new_server,
    qualified,
    random_params,
    random_passage,
    sampling_callback_of,
    short_name,
    structured,
)
from checker.marks import check
from checker.target import Target, leaf_exception

pytestmark = pytest.mark.anyio


@check("prompt_from_request keeps the whole request for the client's model", points=2,
       hint="Walk params.messages in order (content may be one block or a list: content_as_list), keep each role "
            "and its text, and copy system_prompt, max_tokens, temperature, stop_sequences and the hint names.")
async def test_prompt_from_request(target: Target) -> None:
    rng = random.Random()
    prompt_from_request = target.attr("sampling", "prompt_from_request")
    params, want = random_params(rng)
    prompt = prompt_from_request(hand_in(target, params))
    assert prompt.system == want["system"], f"system should be {want['system']!r}, got {prompt.system!r}"
    turns = [tuple(t) for t in prompt.turns]
    assert turns == [tuple(t) for t in want["turns"]], (
        f"turns should keep every message's role and text in order: expected {len(want['turns'])} turns "
        f"{[r for r, _ in want['turns']]}, got {[t[0] for t in turns]}")
    assert prompt.max_tokens == want["max_tokens"], (
        f"max_tokens should be {want['max_tokens']}, got {prompt.max_tokens}")
    assert prompt.temperature == want["temperature"], (
        f"temperature should be {want['temperature']}, got {prompt.temperature}")
    assert list(prompt.stop) == want["stop"], f"stop should be {want['stop']}, got {list(prompt.stop)}"
    assert list(prompt.hints) == want["hints"], (
        f"hints should be the hint names in order {want['hints']}, got {list(prompt.hints)}")
    a, b = word(rng, 3), word(rng, 3)
    two_blocks = CreateMessageRequestParams(max_tokens=50, messages=[SamplingMessage(
        role="user", content=[TextContent(type="text", text=a), TextContent(type="text", text=b)])])
    (role, text), = prompt_from_request(hand_in(target, two_blocks)).turns
    assert (role, text) == ("user", f"{a}\n{b}"), (
        f"a message with two text blocks ({a!r}, {b!r}) should become one turn, its texts joined by a newline in "
        f"order: expected {a + chr(10) + b!r}, got {text!r}")
    image = ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png")
    mixed = CreateMessageRequestParams(max_tokens=50, messages=[SamplingMessage(
        role="user", content=[image, TextContent(type="text", text=a)])])
    turns = [tuple(t) for t in prompt_from_request(hand_in(target, mixed)).turns]
    assert turns == [("user", a)], (
        f"a message holding an image and the text {a!r} should keep its text ({[('user', a)]}), got {turns}: only a "
        "message with no text at all cannot be sent")
    bare = CreateMessageRequestParams(max_tokens=want["max_tokens"], messages=[SamplingMessage(
        role="user", content=TextContent(type="text", text=b))], model_preferences=ModelPreferences(cost_priority=0.5))
    prompt = prompt_from_request(hand_in(target, bare))
    got = (prompt.system, prompt.temperature, list(prompt.stop), list(prompt.hints), prompt.max_tokens)
    assert got == (None, None, [], [], want["max_tokens"]), (
        "a request with no system prompt, temperature or stop sequences, and preferences without hints, should give "
        f"system=None, temperature=None, no stop and no hints (max_tokens {want['max_tokens']}); got {got}: every "
        "field but the messages and max_tokens is optional")
    image_only = CreateMessageRequestParams(max_tokens=50, messages=[SamplingMessage(role="user", content=image)])
    image_only_handed = hand_in(target, image_only)
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
    want, model = fake_model(target, rng, stop_reason=rng.choice(["maxTokens", "stopSequence"]))
    params, expected = random_params(rng)
    reply = await make_sampling_callback(model)(None, hand_in(target, params))
    kind = target.classes(reply)
    assert qualified(CreateMessageResult) in kind, (
        f"the callback should return a CreateMessageResult, got {short_name(kind)}")
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
    params, _ = random_params(rng)
    handed = hand_in(target, params)
    for failure in ("ModelError", "ConnectionError"):
        reason = f"{word(rng, 3)} quota exhausted after {rng.randint(100, 999)} tokens"
        want, model = fake_model(target, rng, failure, reason)
        callback = make_sampling_callback(model)
        try:
            reply = await callback(None, handed)
        except Exception as exc:  # noqa: BLE001
            if type(exc).__name__ != failure or str(exc) != reason:
                raise
            pytest.fail(f"the callback let the model's {failure}({reason!r}) escape; return ErrorData instead")
        kind = target.classes(reply)
        assert qualified(ErrorData) in kind, (
            f"for a failing model the callback should return ErrorData, got {short_name(kind)}")
        message = reply.message
        assert reason in message and want.name in message, (
            f"the ErrorData message {message!r} should name the model ({want.name!r}) and the reason ({reason!r})")
        assert reply.code == INTERNAL_ERROR, (
            f"the ErrorData code should be INTERNAL_ERROR ({INTERNAL_ERROR}), got {reply.code}")
    unreadable_params, _ = random_params(rng)
    position = rng.randrange(len(unreadable_params.messages))
    unreadable_params.messages[position] = SamplingMessage(
        role=unreadable_params.messages[position].role,
        content=ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png"))
    want, model = fake_model(target, rng)
    try:
        reply = await make_sampling_callback(model)(None, hand_in(target, unreadable_params))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"message {position + 1} holds only an image, and the callback raised {type(exc).__name__}: "
                    f"{exc}. A request the model cannot read must come back as ErrorData, or the client crashes")
    kind = target.classes(reply)
    assert qualified(ErrorData) in kind, (
        f"message {position + 1} holds only an image, which a text model cannot read: the callback should answer "
        f"ErrorData, it answered {short_name(kind)}")
    assert want.name in reply.message, f"the ErrorData message {reply.message!r} should name the model {want.name!r}"
    assert not want.prompts, "the request could not be read, yet the model was asked anyway"
    server = new_server(target)
    for mode, version in MODES.items():
        reason = f"{word(rng, 3)} is overloaded ({rng.randint(100, 999)})"
        _, model = fake_model(target, rng, "ModelError", reason)
        callback = sampling_callback_of(target, make_sampling_callback(model))
        async with target.client(server, mode=mode, sampling_callback=callback) as client:
            try:
                result = await client.call_tool("summarise", {"text": random_passage(rng), "max_words": 30})
            except MCPError as exc:
                assert reason in exc.message, (
                    f"on {version} the caller got MCPError {exc.message!r}, which lost the reason {reason!r}")
            except Exception as exc:  # noqa: BLE001
                leaf = leaf_exception(exc)
                pytest.fail(f"on {version} the failing model crashed the client with {type(leaf).__name__}: {leaf}")
            else:
                fail_if_crashed(target, result, "summarise")
                pytest.fail(f"on {version} the model failed, yet summarise returned a result: {first_line(result)!r}")


@check("the student's callback and server work together in both eras", points=2,
       hint="Connect Client(server, sampling_callback=make_sampling_callback(model)): the model should see the "
            "desk's system prompt and the passage, and its answer should come back as the summary.")
async def test_callback_end_to_end(target: Target) -> None:
    rng = random.Random()
    make_sampling_callback = target.attr("sampling", "make_sampling_callback")
    server = new_server(target)
    for mode, version in MODES.items():
        want, model = fake_model(target, rng)
        passage = random_passage(rng)
        callback = sampling_callback_of(target, make_sampling_callback(model))
        async with target.client(server, mode=mode, sampling_callback=callback) as client:
            data = structured(await call_summarise(target, client, passage, rng.randint(20, 80)))
        prompts = want.prompts
        assert prompts, f"on {version} the model behind the callback was never asked"
        prompt = prompts[-1]
        assert prompt.system, f"on {version} the model never saw the desk's system prompt"
        assert any(passage in text for role, text in prompt.turns if role == "user"), (
            f"on {version} the model never saw the passage in a user turn")
        assert data["summary"] == want.text and data["model"] == want.answered_by, (
            f"on {version} expected the summary {want.text!r} by {want.answered_by!r}, got {data!r}")
