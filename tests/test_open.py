"""`course open`: JupyterLab on the lesson notebook, in the course's environment, with a working URL.

Started headless on a free loopback port; the test reads the printed URL, fetches the
notebook through the server's API with that URL's token, and stops the server.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from checker.runner.warm import descendants
from tests.conftest import CODE_LESSONS, COURSE
from tests.coursecopy import COURSE_SCRIPT, course_env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and "Z" not in stat.read_text().rsplit(")", 1)[1].split()[0]


def test_open_prints_a_url_that_serves_the_lesson_notebook() -> None:
    lesson = CODE_LESSONS[0]
    port = _free_port()
    proc = subprocess.Popen([COURSE_SCRIPT, "open", lesson.id, "--no-browser", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=COURSE.root,
                            env=course_env(COURSE.root), start_new_session=True)
    tree: list[int] = []
    try:
        url = ""
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while not url and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "course open exited before printing a URL"
            match = re.search(r"Open this URL: (\S+)", line)
            url = match.group(1) if match else ""
        parsed = urlparse(url)
        assert parsed.hostname == "127.0.0.1" and parsed.port == port
        assert parsed.path == f"/lab/tree/{lesson.notebook}"
        token = parse_qs(parsed.query)["token"][0]
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200 and "JupyterLab" in page.read().decode()
        api = f"http://127.0.0.1:{port}/api/contents/{lesson.notebook}?token={token}"
        with urllib.request.urlopen(api, timeout=30) as response:
            model = json.load(response)
        assert model["type"] == "notebook" and model["content"]["cells"]
        specs = f"http://127.0.0.1:{port}/api/kernelspecs?token={token}"
        with urllib.request.urlopen(specs, timeout=30) as response:
            assert "python3" in json.load(response)["kernelspecs"]
        tree = descendants(proc.pid)
        assert tree, "JupyterLab should run as a child of course open"
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0
    time.sleep(0.3)
    assert not [pid for pid in tree if _alive(pid)], "course open left JupyterLab running"


def test_open_a_lesson_without_a_notebook_is_bad_usage() -> None:
    missing = next((l for l in COURSE.lessons if not (COURSE.root / l.notebook).is_file()), None)
    if missing is None:
        return
    proc = subprocess.run([COURSE_SCRIPT, "open", missing.id, "--no-browser"], capture_output=True, text=True,
                          cwd=COURSE.root, env=course_env(COURSE.root), timeout=60)
    assert proc.returncode == 2 and "no notebook yet" in proc.stderr and proc.stderr.count("\n") == 1
