"""Lesson 9, instructor-only checks: the visible checks' settings and wiring rules, with other inputs.

Left out of the student release and run by `course grade`. Each re-tests a requirement a visible
check already enforces (text edge cases of the variables, validate()'s limits, every setting
reaching its tool) with values the student never saw. They start no uvicorn, no subprocess and
no Redis: two call `Settings.from_env` / `Settings.validate` directly, one drives
`create_server(settings, http=False)` through an in-memory client of each protocol era, so
the whole file takes about a second.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import string
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import text_of, word
from checker.checks.support.lesson09 import FALLBACK_MODEL
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _mixed_case(rng: random.Random, word: str) -> str:
    """`word` with random letters upper-cased, never all lower-case when it has letters."""
    shaken = "".join(c.upper() if rng.random() < 0.5 else c for c in word)
    return shaken if shaken != word or not word.isalpha() else word.upper()


def _from_env(settings_class: Any, env: dict[str, str]) -> Any:
    try:
        return settings_class.from_env(env)
    except ValueError as exc:
        pytest.fail(f"Settings.from_env refused a usable environment: {str(exc)[:300]} (the environment was {env})")
    except NotImplementedError:
        raise  # reported as 'not written yet', with where
    except Exception as exc:  # noqa: BLE001 - the student's crash, reported as a failure
        pytest.fail(f"Settings.from_env raised {type(exc).__name__}: {str(exc)[:300]} (the environment was {env})")


# --- the checks ---------------------------------------------------------------------------------


@check("from_env: blank values keep defaults, empty list items and separators are skipped, booleans ignore case",
       points=1,
       hint="Strip each variable first: a variable holding only spaces is blank, like an unset one. In a list "
            "(comma- or os.pathsep-separated) an empty item is a stray separator, not a value. Booleans are "
            "words a person types: compare them without regard to case, and accept the 'off' words too.")
async def test_settings_text_edge_cases(target: Target, tmp_path: Path) -> None:
    settings_class = target.attr("server", "Settings")
    rng = random.Random()
    first, second, other = (tmp_path / f"{label}-{word(rng)}" for label in ("a", "b", "c"))
    for folder in (first, second, other):
        folder.mkdir()
    defaults = settings_class()
    port = rng.randint(1025, 65000)
    hosts = tuple(f"{word(rng)}.example" for _ in range(rng.randint(2, 3)))
    keys = (secrets.token_hex(32), secrets.token_hex(32))
    sep = os.pathsep
    stateless, stream_all, anonymous = rng.choice(TRUE_WORDS), rng.choice(FALSE_WORDS), rng.choice(TRUE_WORDS[1:])
    env = {
        # stray separators around and between the folders, and the one-folder name set as well: ROOTS wins
        "RESEARCH_DESK_ROOTS": f"{sep}{first}{sep}{sep}{second}{sep}",
        "RESEARCH_DESK_ROOT": str(other),
        "RESEARCH_DESK_PORT": f"{' ' * rng.randint(1, 3)}{port}{' ' * rng.randint(1, 3)}",
        "RESEARCH_DESK_ALLOWED_HOSTS": "," + ",,".join(hosts) + ", ,",
        "RESEARCH_DESK_STATE_KEYS": f"{keys[0]},,{keys[1]},",
        "RESEARCH_DESK_STATELESS": _mixed_case(rng, stateless),
        "RESEARCH_DESK_STREAM_ALL": _mixed_case(rng, stream_all),
        "RESEARCH_DESK_ALLOW_ANONYMOUS": _mixed_case(rng, anonymous),
        # blank (only white space): every one of these keeps its default
        "RESEARCH_DESK_SEARCH_TIMEOUT": " " * rng.randint(1, 4),
        "RESEARCH_DESK_LARGE_DOCUMENT_WORDS": "\t",
        "RESEARCH_DESK_LOG_LEVEL": "  ",
        "RESEARCH_DESK_TRANSPORT": " ",
        "RESEARCH_DESK_REPLICA": "   ",
    }
    got = _from_env(settings_class, env)
    expected: dict[str, Any] = {
        "roots": (first, second), "port": port, "allowed_hosts": hosts, "state_keys": keys,
        "stateless": True, "stream_all": False, "allow_anonymous": True,
        "search_timeout": defaults.search_timeout, "large_document_words": defaults.large_document_words,
        "log_level": defaults.log_level, "transport": defaults.transport, "replica": defaults.replica,
    }
    why = {
        "roots": f"split on {sep!r}, skip the empty items, and prefer RESEARCH_DESK_ROOTS to RESEARCH_DESK_ROOT",
        "port": "surrounding spaces are not part of the number",
        "allowed_hosts": "empty items between commas are stray separators",
        "state_keys": "empty items between commas are stray separators, not keys",
        "stateless": "booleans are case-insensitive",
        "stream_all": f"{stream_all!r} in any case means off",
        "allow_anonymous": "booleans are case-insensitive",
    }
    for name, want in expected.items():
        have = getattr(got, name, None)
        if name == "roots":
            have = tuple(Path(p) for p in have or ())
        elif isinstance(have, list):
            have = tuple(have)
        variable = "RESEARCH_DESK_" + name.upper()
        assert have == want, (
            f"Settings.from_env: {variable}={env[variable]!r} gave {name}={have!r}, expected {want!r} "
            f"({why.get(name, 'a blank variable keeps the default, like an unset one')})")

    fallback = _from_env(settings_class, {"RESEARCH_DESK_ROOTS": "", "RESEARCH_DESK_ROOT": str(other)})
    have = tuple(Path(p) for p in fallback.roots or ())
    assert have == (other,), (
        f"with RESEARCH_DESK_ROOTS empty and RESEARCH_DESK_ROOT={str(other)!r}, roots came out {have}; an empty "
        f"variable is as good as unset, so the one-folder RESEARCH_DESK_ROOT applies")


def _verdict(settings_class: Any, values: dict[str, Any]) -> str:
    """'accepted' or 'refused: <message>' for Settings(**values).validate(); other errors fail the check."""
    try:
        settings = settings_class(**values)
    except TypeError as exc:
        pytest.fail(f"Settings(...) does not take the documented fields: {exc}")
    try:
        checked = settings.validate()
    except ValueError as exc:
        return f"refused: {exc}"
    except NotImplementedError:
        raise  # reported as 'not written yet', with where
    except Exception as exc:  # noqa: BLE001 - the student's crash, reported as a failure
        pytest.fail(f"Settings({_shown(values)}).validate() raised {type(exc).__name__}: {str(exc)[:200]} "
                    f"(a setting that cannot be used is a SettingsError)")
    if checked is None or getattr(checked, "port", None) != settings.port:
        pytest.fail(f"Settings({_shown(values)}).validate() returned {checked!r}; it should return the settings "
                    f"themselves, so that `Settings(...).validate()` can be used in one expression")
    return "accepted"


def _shown(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


@check("validate() draws the lines exactly: port and name limits, files and missing folders, loopback by any name",
       points=1,
       hint="Ports 1 and 65535 are valid, 0 is not; a replica name may be up to 32 lowercase letters and digits; "
            "every state key (not only the first) must be usable; every root must be an existing folder. "
            "Loopback has several names (127.0.0.1, localhost, ::1), and a public URL on loopback exposes nothing.")
async def test_validate_boundaries(target: Target, tmp_path: Path) -> None:
    settings_class = target.attr("server", "Settings")
    rng = random.Random()
    root = tmp_path / f"desk-{word(rng)}"
    root.mkdir()
    afile = root / f"{word(rng)}.md"
    afile.write_text("# a document, not a folder\n", encoding="utf-8")
    base: dict[str, Any] = {"roots": (root,)}
    alphabet = string.ascii_lowercase + string.digits
    local_port = rng.randint(1025, 65000)

    accepted: list[tuple[dict[str, Any], str]] = [
        ({"port": 1}, "port 1 is the lowest TCP port"),
        ({"port": 65535}, "port 65535 is the highest TCP port"),
        ({"replica": rng.choice(string.ascii_lowercase) + "".join(rng.choices(alphabet, k=31))},
         "a replica name of exactly 32 lowercase letters and digits is allowed"),
        ({"state_keys": (secrets.token_hex(32), secrets.token_urlsafe(rng.randint(32, 48)))},
         "two keys of 32 bytes or more are a valid rotation"),
        ({"transport": "http", "host": rng.choice(["localhost", "::1"])},
         "HTTP on a loopback address is local development, whichever name loopback goes by"),
        ({"transport": "http", "public_url": f"http://{rng.choice(['localhost', '127.0.0.1'])}:{local_port}/mcp"},
         "a public URL on loopback is reachable from this machine only"),
    ]
    for extra, reason in accepted:
        values = {**base, **extra}
        verdict = _verdict(settings_class, values)
        assert verdict == "accepted", (
            f"Settings({_shown(values)}).validate() {verdict[:300]}; expected acceptance: {reason}")

    missing = root / f"{word(rng)}-gone"
    refused: list[tuple[dict[str, Any], str, str]] = [
        ({"port": 0}, "RESEARCH_DESK_PORT", "port 0 is not a port a server can listen on"),
        ({"port": -rng.randint(1, 9999)}, "RESEARCH_DESK_PORT", "a negative port"),
        ({"roots": (afile,)}, "RESEARCH_DESK_ROOTS", "that root exists but is a file, not a folder"),
        ({"roots": (root, missing)}, "RESEARCH_DESK_ROOTS", "the second root does not exist (check every root)"),
        ({"roots": ()}, "RESEARCH_DESK_ROOTS", "no roots at all leaves nothing to serve"),
        ({"replica": rng.choice(string.ascii_lowercase) + "".join(rng.choices(alphabet, k=32))},
         "RESEARCH_DESK_REPLICA", "a 33-character replica name is one too long"),
        ({"state_keys": (secrets.token_hex(32), secrets.token_hex(rng.randint(4, 15)))},
         "RESEARCH_DESK_STATE_KEYS", "the second key is too short (every key must be usable, not only the first)"),
        ({"transport": "http", "host": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"},
         "RESEARCH_DESK_TOKEN", "HTTP on a private-network address without a token exposes the workspace"),
    ]
    for extra, variable, reason in refused:
        values = {**base, **extra}
        verdict = _verdict(settings_class, values)
        assert verdict.startswith("refused") and variable in verdict, (
            f"Settings({_shown(values)}).validate() was {verdict[:300]!r}; expected a SettingsError naming "
            f"{variable}: {reason}")


@check("create_server wires the settings: documents from the first root, files from all, the limit and replica name",
       points=1,
       hint="Each lesson's register(...) takes what Settings says: the document tools the workspace (the first "
            "root), the file tools every configured root, summarise_document the large-document limit, lesson 6's "
            "tools the replica's effective name (settings.replica may be empty; the default name is p<pid>).")
async def test_settings_reach_the_tools(target: Target, tmp_path: Path) -> None:
    rng = random.Random()
    workspace, extra = tmp_path / f"ws-{word(rng)}", tmp_path / f"more-{word(rng)}"
    limit = rng.randint(20, 60)
    texts: dict[str, str] = {}
    short_name, long_name = f"short-{word(rng)}.md", f"long-{word(rng)}.md"
    texts[short_name] = f"# {word(rng).title()}\n\n" + " ".join(word(rng) for _ in range(limit - 5)) + ".\n"
    long_words = limit + rng.randint(5, 40)
    texts[long_name] = f"# {word(rng).title()}\n\n" + " ".join(word(rng) for _ in range(long_words)) + ".\n"
    for index in range(rng.randint(1, 3)):
        texts[f"notes/{word(rng)}-{index}.txt"] = f"{word(rng)} {word(rng)}\n"
    for name, text in texts.items():
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_text(text, encoding="utf-8")
    extra.mkdir()
    outside_name = f"elsewhere-{word(rng)}.md"
    outside_text = f"# Elsewhere\n\n{word(rng)} {secrets.token_hex(6)}\n"
    (extra / outside_name).write_text(outside_text, encoding="utf-8")
    words = {name: len(text.split()) for name, text in texts.items()}
    assert words[short_name] <= limit < words[long_name]

    server_module = target.module("server")
    try:
        settings = server_module.Settings(roots=(workspace, extra), large_document_words=limit, replica="")
        server = server_module.create_server(settings, http=False)
    except NotImplementedError:
        raise  # reported as 'not written yet', with where
    except Exception as exc:  # noqa: BLE001 - the student's crash, reported as a failure
        pytest.fail(f"create_server(Settings(roots=(workspace, other), large_document_words={limit}), http=False) "
                    f"raised {type(exc).__name__}: {str(exc)[:300]}")
    seen: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        got: dict[str, Any] = {}
        try:
            async with target.client(server, mode=mode) as client:
                got["listed"] = await client.call_tool("list_documents", {})
                got["far file"] = await client.call_tool("read_file", {"path": str(extra / outside_name)})
                got["short"] = await client.call_tool("summarise_document", {"name": short_name})
                got["long"] = await client.call_tool("summarise_document", {"name": long_name})
                got["replica"] = await client.call_tool("replica_info", {})
        except MCPError as exc:
            pytest.fail(f"[{mode}] a call to the capstone server failed with a protocol error {exc.code}: "
                        f"{exc.message}")
        seen[mode] = got

    names = sorted(texts)
    for mode, got in seen.items():
        listed = got["listed"]
        have = (listed.structured_content or {}).get("result") if not listed.is_error else text_of(listed)
        assert have == names, (
            f"[{mode}] with roots ({workspace.name}, {extra.name}), list_documents gave {have!r}; expected the "
            f"first root's documents {names}: the workspace is the first root, and only it is indexed")
        far = got["far file"]
        assert not far.is_error and text_of(far) == outside_text, (
            f"[{mode}] read_file of a file in the second configured root ({extra.name}/{outside_name}) gave "
            f"{'an error: ' + text_of(far)[:160] if far.is_error else 'other text'}; the file tools must be given "
            f"every configured root, not only the workspace")
        short = got["short"]
        summary = short.structured_content or {}
        assert not short.is_error and summary.get("model") == FALLBACK_MODEL, (
            f"[{mode}] summarise_document({short_name!r}), {words[short_name]} words with the limit at {limit}, "
            f"gave {text_of(short)[:160]!r}; expected the extractive fallback summary of that workspace document "
            f"(it lies in the first root, and a client with no model gets the fallback)")
        long = got["long"]
        assert long.is_error, (
            f"[{mode}] summarise_document({long_name!r}) is {words[long_name]} words, above "
            f"large_document_words={limit}, and the client cannot be asked; it was summarised anyway "
            f"({(long.structured_content or {}).get('model')!r}). Pass the setting on to lesson 2's tools; the "
            f"default limit is not the configured one")
        info = got["replica"]
        replica = (info.structured_content or {}).get("replica") if not info.is_error else None
        assert isinstance(replica, str) and re.fullmatch(r"p\d+", replica), (
            f"[{mode}] with no replica configured (replica=''), replica_info named the replica {replica!r} "
            f"({text_of(info)[:120] if info.is_error else 'no error'}); expected the default name p<pid>, as "
            f"Settings.replica_name gives it")
