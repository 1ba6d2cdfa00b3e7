"""Lesson 2 checks, elicitation: ask the user before spending their tokens, and never pass a key through the client.

A workspace holds documents around a random word limit (well under it, exactly at it, one word
over); the check's client records the order of its questions and samples. The URL-mode checks
call the given `search_archive` tool over a fresh vault whose address and service are random.
"""

from __future__ import annotations

import random
import string
from typing import Any, Literal

import pytest
from mcp import MCPError
from mcp.types import (
    URL_ELICITATION_REQUIRED,
    ElicitResult,
)

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import word
from checker.checks.support.lesson02 import (
    FakeClientModel,
    Workspace,
    archive_server,
    call_summarise,
    elicitation_answer,
    first_line,
    new_server,
    structured,
)
from checker.checks.support.lesson02 import workspace as workspace  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("a large document is summarised only after the user agrees (elicitation first)", points=3,
       hint="Return Elicit(message, GoAhead) from the confirmation resolver when the document is over the limit; "
            "small documents need no question. Name the document and its word count so the user can decide.")
async def test_large_document_asks_first(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    server = new_server(target, workspace.root, workspace.limit)
    for mode, version in MODES.items():
        events: list[str] = []
        messages: list[str] = []
        fake = FakeClientModel(rng, events=events)
        answer = elicitation_answer(events, messages, {"proceed": True})
        async with target.client(server, mode=mode, sampling_callback=fake, elicitation_callback=answer) as client:
            for name in (workspace.small, workspace.at_limit):
                events.clear()
                result = await call_summarise(target, client, name, 40, "summarise_document")
                small = structured(result, "summarise_document")
                assert events == ["sample"], (
                    f"on {version} a {workspace.words[name]}-word document (limit {workspace.limit}: up to and "
                    f"including the limit needs no question) should be summarised without a question; the client "
                    f"saw {events}")
                assert small["summary"] == fake.reply, f"on {version} the summary should be the model's reply"
            events.clear()
            result = await call_summarise(target, client, workspace.large, 40, "summarise_document")
            large = structured(result, "summarise_document")
        assert large["summary"] == fake.reply, f"on {version} the summary should be the model's reply"
        assert events == ["elicit", "sample"], (
            f"on {version} a {workspace.words[workspace.large]}-word document (one over the limit "
            f"{workspace.limit}) should ask the user once, before any sampling; the client saw {events}")
        assert workspace.large in messages[0] and str(workspace.words[workspace.large]) in messages[0], (
            f"on {version} the question {messages[0]!r} should name {workspace.large!r} and its "
            f"{workspace.words[workspace.large]} words")
        refusals: list[tuple[dict[str, Any] | None, Literal["accept", "decline"]]] = [
            ({"proceed": False}, "accept"), (None, "decline")]
        for content, action in refusals:
            events.clear()
            async with target.client(server, mode=mode, sampling_callback=FakeClientModel(rng, events=events),
                                     elicitation_callback=elicitation_answer(events, [], content, action)) as client:
                result = await call_summarise(target, client, workspace.large, 40, "summarise_document")
            said = "declined" if action == "decline" else "answered proceed=false"
            assert result.is_error, f"on {version} the user {said}, yet summarise_document returned a summary"
            assert "sample" not in events, f"on {version} the user {said}, yet the document was still sent to the model"


@check("a client that cannot ask the user gets a clear refusal for a large document", points=2,
       hint="Check ctx.client_capabilities.elicitation before returning Elicit: a client without it would fail the "
            "call with -32021. Treat 'cannot ask' as 'no' for large documents; small ones need no question.")
async def test_large_document_without_elicitation(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    server = new_server(target, workspace.root, workspace.limit)
    for mode, version in MODES.items():
        fake = FakeClientModel(rng)
        async with target.client(server, mode=mode, sampling_callback=fake) as client:
            small = await call_summarise(target, client, workspace.small, 40, "summarise_document")
            asked_for_small = len(fake.seen)
            large = await call_summarise(target, client, workspace.large, 40, "summarise_document")
        assert structured(small, "summarise_document")["summary"] == fake.reply, (
            f"on {version} a small document needs no question and should be summarised")
        assert large.is_error, f"on {version} a large document was summarised although nobody could agree to it"
        assert workspace.large in first_line(large), (
            f"on {version} the refusal {first_line(large)!r} should name the document {workspace.large!r}")
        assert len(fake.seen) == asked_for_small, f"on {version} the large document was sent to the model anyway"


@check("a missing credential sends the user to the desk's page (URL mode), never a form", points=2,
       hint="An API key must not pass through the client. When the vault has no key and the client declared URL "
            "elicitation (client_capabilities.elicitation.url), raise UrlElicitationRequiredError with an "
            "ElicitRequestURLParams for the vault's connect page; once the page has stored the key, just use it.")
async def test_credential_by_url_not_by_form(target: Target) -> None:
    rng = random.Random()
    server, vault, service = archive_server(target, rng)
    asked: list[Any] = []

    async def callback(context: Any, params: Any) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action="decline")

    query = word(rng, 3)
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
        assert isinstance(wanted, list) and len(wanted) == 1, (
            f"{mode}: the error should carry one elicitation, got {error.data!r}")
        page = wanted[0]
        assert page.get("mode") == "url" and page.get("url") == vault.connect_url(service), (
            f"{mode}: the elicitation sends the user to {page.get('url')!r}, expected the vault's connect page "
            f"{vault.connect_url(service)!r}")
        assert page.get("elicitationId") == vault.elicitation_id(service), (
            f"{mode}: elicitationId {page.get('elicitationId')!r}; the page completes "
            f"{vault.elicitation_id(service)!r}")
        assert service in page.get("message", ""), (
            f"{mode}: the message {page.get('message')!r} does not name {service!r}")
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
    server, vault, service = archive_server(target, rng)
    for mode in MODES:
        async with target.client(server, mode=mode) as client:
            try:
                result = await client.call_tool("search_archive", {"query": word(rng, 3)})
            except MCPError as exc:
                pytest.fail(f"{mode}: a client that declared no elicitation got the protocol error {exc.error.code} "
                            f"{exc.error.message!r}: it cannot open pages, so answer with a tool error naming the page")
        text = " ".join(getattr(block, "text", "") for block in result.content)
        assert result.is_error, f"{mode}: with no key stored, search_archive answered {text!r} instead of an error"
        assert vault.connect_url(service) in text, (
            f"{mode}: the error {text!r} does not name the connect page {vault.connect_url(service)!r}")
