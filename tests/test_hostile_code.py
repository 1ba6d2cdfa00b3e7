"""Student code that loops, exits, crashes, floods or hogs memory costs its checks and nothing else.

Each case replaces the lesson-1 module of a copy of the solutions with hostile code and runs
`course check` on it with a short per-check limit: the runner must report every check as failed
with a reason, finish within its bound, exit 1, and leave the student's folder untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import COURSE

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

CONTEXT = (COURSE.solutions / COURSE.package / "context.py").read_text()
FUTURE = "from __future__ import annotations\n"


def at_import(code: str) -> str:
    """The module with `code` run at import time (after its __future__ line)."""
    return CONTEXT.replace(FUTURE, FUTURE + code, 1)


CASES = {
    "infinite loop in the lifespan": (
        CONTEXT.replace("    root = Path(root)\n", "    while True:\n        pass\n", 1), "did not finish within"),
    "sys.exit in the lifespan": (
        CONTEXT.replace("    root = Path(root)\n", "    import sys; sys.exit(3)\n", 1), "SystemExit"),
    "os._exit in the lifespan": (
        CONTEXT.replace("    root = Path(root)\n", "    import os; os._exit(0)\n", 1), "ended abruptly"),
    "crash at import": (at_import("raise RuntimeError('broken on purpose')\n"), "RuntimeError: broken on purpose"),
    "infinite loop at import": (at_import("while True:\n    pass\n"), "did not finish within"),
    "sys.exit at import": (at_import("import sys\nsys.exit(0)\n"), "does not import (line 25): SystemExit: 0"),
    "output flood": (CONTEXT.replace("    root = Path(root)\n", "    import sys\n    while True:\n        sys.stdout.write('x' * 65536)\n", 1), ""),
    "memory hog": (CONTEXT.replace("    root = Path(root)\n", "    hog = bytearray(64 * 1024 ** 3)\n", 1), ""),
}


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_module_fails_its_checks_and_nothing_else(case: str, tmp_path: Path) -> None:
    source, reason = CASES[case]
    edition = tmp_path / "src"
    shutil.copytree(COURSE.solutions, edition, ignore=shutil.ignore_patterns("__pycache__"))
    (edition / COURSE.package / "context.py").write_text(source)
    before = _snapshot(edition)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "checker.cli.app", "check", "1", "--against", str(edition), "--timeout", "3", "--json"],
        capture_output=True, text=True, cwd=COURSE.root, timeout=120, env=dict(os.environ, COURSE_ROOT=str(COURSE.root)))
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, f"expected exit 1, got {proc.returncode}: {proc.stderr[-1500:]}"
    result = json.loads(proc.stdout)
    assert not result["error"], result["error"]
    assert len(result["checks"]) >= 6 and all(c["outcome"] == "failed" for c in result["checks"]), result["checks"]
    assert all(c["message"] for c in result["checks"]), "every failure must say why"
    if reason:
        assert any(reason in c["message"] for c in result["checks"]), [c["message"] for c in result["checks"]]
    assert elapsed < 60, f"the hostile case took {elapsed:.0f} s; per-check limits should bound it"
    assert _snapshot(edition) == before, "the runner wrote into the student's folder"
