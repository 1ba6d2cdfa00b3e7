"""The capstone with JWT access tokens (lesson 5, going further), deployed as documented.

The desk runs as `uvicorn --factory research_desk.server:build_app` with RESEARCH_DESK_ISSUER_URL,
RESEARCH_DESK_JWKS_URL and RESEARCH_DESK_TOOL_SCOPES pointing at an issuer this test runs (the
checks' own: keys made here, JWKS on loopback). What must hold:

* an exposed desk (public URL) with the issuer's tokens and no static token starts, and
  "no token, no public serving" still holds when neither is set;
* no token, another resource's token or an expired one gets 401; a token without a tool's scope
  gets 403 insufficient_scope naming the scopes; the step-up token is served, in both eras;
* the protected-resource metadata names the issuer, not the desk;
* settings that cannot work (a JWKS without its issuer, a static token beside it, scopes without
  JWTs, a malformed rule) stop the server with exit code 2 and a line naming the variable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from checker import verify
from checker.checks.support.lesson05_authorization import Issuer, call_raw, challenge
from tests.conftest import COURSE

pytestmark = pytest.mark.full  # starts real servers: the full suite only (tests/conftest.py)

PUBLIC = "desk.example.com"
RESOURCE = f"https://{PUBLIC}/mcp"
READ, WRITE = "desk:read", "desk:write"


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    made = Issuer()
    made.start()
    yield made
    made.stop()


def _env(folder: Path, **settings: str) -> dict[str, str]:
    root = folder / "workspace"
    root.mkdir(exist_ok=True)
    (root / "alpha.md").write_text("# Alpha\n\nThe fox crossed the river.\n", encoding="utf-8")
    return verify.python_env(COURSE.solutions, {"RESEARCH_DESK_ROOTS": str(root), "RESEARCH_DESK_REPLICA": "a1",
                                                "RESEARCH_DESK_LOG_LEVEL": "WARNING", **settings})


@pytest.fixture(scope="module")
def desk(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("jwt-desk")
    env = _env(folder, RESEARCH_DESK_PUBLIC_URL=RESOURCE, RESEARCH_DESK_ISSUER_URL=issuer.url,
               RESEARCH_DESK_JWKS_URL=issuer.jwks_url,
               RESEARCH_DESK_TOOL_SCOPES=f"*={READ},save_note={READ} {WRITE}")
    port = verify.free_port()
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "research_desk.server:build_app", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            env=env, cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        problem = verify.wait_healthy(verify.HttpServer("a1", port, process, log, None))
        assert not problem, problem
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        verify.stop_process(process)


NOTE = {"title": "Fox", "body": "It crossed at dawn.", "idempotency_key": "fox-note-0001"}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_scopes_per_tool_and_step_up(desk: str, issuer: Issuer, mode: str) -> None:
    reader, editor = issuer.mint(RESOURCE, [READ]), issuer.mint(RESOURCE, [READ, WRITE])
    note = {**NOTE, "idempotency_key": f"{NOTE['idempotency_key']}-{mode}"}
    async with httpx2.AsyncClient(timeout=30) as http:
        listed = await call_raw(http, desk, PUBLIC, reader, "list_documents", {}, mode)
        assert listed.status_code == 200, listed.text[:300]
        refused = await call_raw(http, desk, PUBLIC, reader, "save_note", note, mode)
        assert refused.status_code == 403, refused.text[:300]
        said = challenge(refused)
        assert said["error"] == "insufficient_scope" and said["scope"].split() == [READ, WRITE], said
        assert said["resource_metadata"] == f"https://{PUBLIC}/.well-known/oauth-protected-resource/mcp", said
        saved = await call_raw(http, desk, PUBLIC, editor, "save_note", note, mode)
        assert saved.status_code == 200 and '"isError":false' in saved.text.replace(" ", ""), saved.text[:300]
        for token in (None, issuer.mint("https://other.example.com/mcp", [READ, WRITE]),
                      issuer.mint(RESOURCE, [READ, WRITE], exp=1_000_000_000)):
            answer = await call_raw(http, desk, PUBLIC, token, "list_documents", {}, mode)
            assert answer.status_code == 401, (token, answer.status_code)


def test_metadata_names_the_issuer(desk: str, issuer: Issuer) -> None:
    metadata = httpx2.get(desk.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"),
                          headers={"Host": PUBLIC}, timeout=10)
    assert metadata.status_code == 200
    assert metadata.json()["authorization_servers"] == [issuer.url]
    assert metadata.json()["resource"] == RESOURCE


def test_no_open_metrics_with_jwt_alone(desk: str) -> None:
    """With JWT access tokens and no static token, nothing could guard /metrics: it is not served
    (the desk is exposed, and its traffic figures name every tool)."""
    for token in ("", "anything"):
        headers = {"Host": PUBLIC} | ({"Authorization": f"Bearer {token}"} if token else {})
        scraped = httpx2.get(desk.replace("/mcp", "/metrics"), headers=headers, timeout=10)
        assert scraped.status_code == 404, (scraped.status_code, scraped.text[:200])
        assert "research_desk_requests_total" not in scraped.text


@pytest.mark.parametrize(("settings", "named"), [
    ({"RESEARCH_DESK_JWKS_URL": "http://127.0.0.1:9/jwks.json"}, "RESEARCH_DESK_ISSUER_URL"),
    ({"RESEARCH_DESK_JWKS_URL": "http://127.0.0.1:9/jwks.json", "RESEARCH_DESK_ISSUER_URL": "http://127.0.0.1:9",
      "RESEARCH_DESK_TOKEN": "a-static-token-too"}, "RESEARCH_DESK_TOKEN"),
    ({"RESEARCH_DESK_TOOL_SCOPES": "save_note=desk:write", "RESEARCH_DESK_TOKEN": "static"},
     "RESEARCH_DESK_TOOL_SCOPES"),
    ({"RESEARCH_DESK_JWKS_URL": "http://127.0.0.1:9/jwks.json", "RESEARCH_DESK_ISSUER_URL": "http://127.0.0.1:9",
      "RESEARCH_DESK_TOOL_SCOPES": "save_note"}, "RESEARCH_DESK_TOOL_SCOPES"),
    ({}, "RESEARCH_DESK_TOKEN"),  # exposed, and neither a token nor an issuer: still refused
], ids=["jwks-without-issuer", "jwks-and-token", "scopes-without-jwks", "malformed-rule", "exposed-without-either"])
def test_unworkable_settings_stop_the_server(tmp_path: Path, settings: dict[str, str], named: str) -> None:
    env = _env(tmp_path, RESEARCH_DESK_PUBLIC_URL=RESOURCE, **settings)
    done = subprocess.run([sys.executable, "-m", "research_desk.server", "--transport", "http"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])
    assert named in done.stderr and not done.stdout, json.dumps([done.stdout, done.stderr[-500:]])
