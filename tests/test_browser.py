"""Lesson 1 in a real browser: JupyterLab in headless Chromium, every cell run, nothing red.

This is what a student sees, checked the way they would: the notebook opens, Run All
finishes without an error output, the Mermaid diagram is drawn as an SVG, and the check
cell shows the report as HTML. Screenshots are kept in tests/artifacts/ (gitignored).

Chromium is driven over the DevTools protocol with websocket-client (installed with
jupyter-server), so no browser download is needed: Debian's `chromium` package is enough.
The test skips, saying how to install it, where Chromium is missing.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checker.student.jupyter import Lab
from checker.registry import load_course
from checker.runner.warm import descendants
from tests.coursecopy import copy_course

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000", "--remote-debugging-port=0"]
RUN_ALL_TIMEOUT = 600

pytestmark = [pytest.mark.full,  # slow: the full suite only (tests/conftest.py)
              pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: sudo apt-get install -y chromium")]


class DevTools:
    """The few DevTools-protocol calls this test needs, over one page's WebSocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=120, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}…: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}")

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[str]:
    """A headless Chromium; yields the DevTools endpoint of its first page."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))
    proc = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            assert proc.poll() is None, "Chromium exited at startup"
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            pages = [t for t in json.load(response) if t["type"] == "page"]
        yield pages[0]["webSocketDebuggerUrl"]
    finally:
        tree = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


NOTEBOOK_JS = """(() => {{
  const w = window.jupyterapp
    && [...jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === {path});
  return w && w.content && w.content.model ? w : null;
}})()"""
STATE = """(() => {{
  const panel = {notebook};
  if (!panel) return null;
  const cells = [...panel.content.model.cells].map(c => c.toJSON());
  const code = cells.filter(c => c.cell_type === 'code');
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {{
    kernel: kernel ? kernel.status : 'none',
    done: code.filter(c => c.execution_count !== null).length,
    code: code.length,
    errors: code.flatMap(c => c.outputs).filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
    tracebacks: code.flatMap(c => c.outputs)
      .filter(o => o.name === 'stderr' && /Traceback/.test(o.text)).map(o => o.text),
  }};
}})()"""


def test_lesson_1_runs_in_jupyterlab_in_a_real_browser(tmp_path: Path, chromium: str) -> None:
    root = copy_course(tmp_path / "course")  # outputs are saved into the copy, never the lesson file
    course = load_course(root)
    lesson = course.lesson("1")
    env = {k: v for k, v in os.environ.items() if k != "COURSE_NOTEBOOK_STRICT"}
    env["PYTHONPATH"] = str(course.solutions)  # the kernel grades the reference edition, as the notebook tests do
    lab = Lab(course, lesson, port=_free_port(), env=env, extra_args=("--LabApp.expose_app_in_browser=True",))
    try:
        assert lab.wait_ready(), "JupyterLab did not start"
        page = DevTools(chromium)
        page.call("Page.enable")
        page.call("Emulation.setFocusEmulationEnabled", enabled=True)  # headless has no focused window
        page.call("Page.navigate", url=lab.url)
        notebook = NOTEBOOK_JS.format(path=json.dumps(lesson.notebook))
        page.wait_for(f"(() => {{ const p = {notebook}; return p && p.sessionContext.session && "
                      "p.sessionContext.session.kernel && p.sessionContext.session.kernel.status === 'idle'; })()",
                      180, "the notebook to open with an idle kernel")
        page.js(f"(() => {{ jupyterapp.shell.activateById({notebook}.id); "
                "jupyterapp.commands.execute('notebook:run-all-cells'); return true; })()")
        state_js = STATE.format(notebook=notebook)
        state = page.wait_for(f"(() => {{ const s = {state_js}; return s && s.done === s.code && s.kernel === 'idle' "
                              "? s : null; })()", RUN_ALL_TIMEOUT, "Run All to finish")
        assert not state["errors"], f"cells ended in errors: {state['errors']}"
        assert not state["tracebacks"], f"tracebacks on stderr: {state['tracebacks'][0][-1500:]}"

        # JupyterLab 4 draws a ```mermaid block as an SVG image inside .jp-RenderedMermaid.
        mermaid = page.wait_for("(() => { const i = document.querySelector('.jp-RenderedMermaid img'); "
                                "if (!i || !i.complete || !i.naturalWidth) return null; "
                                "i.scrollIntoView({block: 'center'}); const r = i.getBoundingClientRect(); "
                                "return {w: r.width, h: r.height, svg: decodeURIComponent(i.src)}; })()",
                                60, "the Mermaid diagram to be drawn")
        assert mermaid["w"] > 100 and mermaid["h"] > 100, mermaid
        assert "open_desk" in mermaid["svg"] and "Syntax error" not in mermaid["svg"], mermaid["svg"][:500]
        time.sleep(0.5)
        page.screenshot("lesson-1-diagram.png")

        report = page.wait_for("(() => { const r = [...document.querySelectorAll('.course-check-report')].pop(); "
                               "if (!r) return null; r.scrollIntoView({block: 'center'}); return r.innerText; })()",
                               60, "the check cell's report")
        assert "lesson-1" in report and "failed" in report and " 0 failed" in report, report
        assert "✗" not in report and report.count("✓") >= 6, report
        colour = page.js("getComputedStyle(document.querySelector('.course-check-report span[style*=color]')).color")
        assert colour.startswith("rgb"), colour
        time.sleep(0.5)
        shot = page.screenshot("lesson-1-check-cell.png")
        assert shot.stat().st_size > 10_000
        page.ws.close()
    finally:
        lab.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_lesson_opens_without_unsaved_changes(tmp_path: Path, chromium: str) -> None:
    """Opening a notebook and starting its kernel changes nothing in it: JupyterLab rewrites the
    kernelspec and language_info it finds unless they already say what the course's kernel says."""
    from ipykernel.ipkernel import IPythonKernel

    root = copy_course(tmp_path / "course")
    course = load_course(root)
    lesson = course.lesson("1")
    # The one field that follows the machine: the Python patch version (3.11.7 here, 3.11.2 on Debian).
    stored = json.loads((root / lesson.notebook).read_text())
    stored["metadata"]["language_info"]["version"] = IPythonKernel.language_info["version"]
    (root / lesson.notebook).write_text(json.dumps(stored, indent=1) + "\n")
    lab = Lab(course, lesson, port=_free_port(), extra_args=("--LabApp.expose_app_in_browser=True",))
    try:
        assert lab.wait_ready(), "JupyterLab did not start"
        page = DevTools(chromium)
        page.call("Page.enable")
        page.call("Page.navigate", url=lab.url)
        notebook = NOTEBOOK_JS.format(path=json.dumps(lesson.notebook))
        page.wait_for(f"(() => {{ const p = {notebook}; return p && p.sessionContext.session && "
                      "p.sessionContext.session.kernel && p.sessionContext.session.kernel.status === 'idle'; })()",
                      180, "the notebook to open with an idle kernel")
        time.sleep(2)  # the kernel's info reply updates the metadata a moment after it is idle
        state = page.js(f"(() => {{ const p = {notebook}; return {{dirty: p.context.model.dirty, "
                        "metadata: p.context.model.toJSON().metadata}; })()")
        assert not state["dirty"], f"marked unsaved on open; the metadata JupyterLab set: {state['metadata']}"
        page.ws.close()
    finally:
        lab.stop()
