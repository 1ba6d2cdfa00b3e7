"""`course reset`: a lesson's starter code comes back, and no version of a student's file is ever lost."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pexpect

from checker.registry import load_course
from checker.student.reset import changed_files, find_backup, lesson_files, list_backups, reset_lesson, restore_backup
from checker.starter import expected_starter
from tests.conftest import COURSE
from tests.coursecopy import COURSE_SCRIPT, copy_course, course_env

MODULE = f"src/{COURSE.package}/context.py"


def course(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COURSE_SCRIPT, *args], capture_output=True, text=True, cwd=root, env=course_env(root),
                          input=stdin, timeout=120)


def _student(root: Path) -> Path:
    return root / "capstone" / MODULE


def test_the_lessons_files_are_its_modules_in_the_starter_edition() -> None:
    files = lesson_files(COURSE, COURSE.lesson("1"))
    assert list(files) == [MODULE]
    assert files[MODULE] == expected_starter(COURSE.solutions.parent)[MODULE]


def test_reset_then_restore_gives_back_the_exact_bytes(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    mine = b"# my work \xe2\x9c\x93\r\nasync def open_desk(root):\n    ...  # half done\n\x00tail"
    _student(root).write_bytes(mine)
    proc = course(root, "reset", "1", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert _student(root).read_bytes() == lesson_files(load_course(root), COURSE.lesson("1"))[MODULE]
    assert "course reset --restore" in proc.stdout
    listed = course(root, "reset", "--list")
    assert listed.returncode == 0 and "reset-lesson-1" in listed.stdout and MODULE in listed.stdout
    name = listed.stdout.split()[0]
    proc = course(root, "reset", "--restore", name, "--yes")
    assert proc.returncode == 0, proc.stderr
    assert _student(root).read_bytes() == mine


def test_reset_twice_keeps_both_versions(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    local = load_course(root)
    lesson = local.lesson("1")
    versions = [b"# first attempt\n", b"# second attempt\n"]
    for version in versions:
        _student(root).write_bytes(version)
        changed, backup = reset_lesson(local, lesson)
        assert changed == [MODULE] and backup is not None
    backups = list_backups(local)
    assert [(b.folder / MODULE).read_bytes() for b in backups] == versions
    assert len({b.name for b in backups}) == 2


def test_restore_backs_up_what_it_overwrites(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    local = load_course(root)
    _student(root).write_bytes(b"# version A\n")
    reset_lesson(local, local.lesson("1"))
    _student(root).write_bytes(b"# version B, written after the reset\n")
    restore_backup(local, find_backup(local, "latest"))
    assert _student(root).read_bytes() == b"# version A\n"
    kept = [(b.folder / MODULE).read_bytes() for b in list_backups(local)]
    assert b"# version B, written after the reset\n" in kept and b"# version A\n" in kept


def test_nothing_to_reset_changes_nothing(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    local = load_course(root)
    lesson = local.lesson("1")
    reset_lesson(local, lesson)  # make sure it is the starter
    before = list_backups(local)
    proc = course(root, "reset", "1", "--yes")
    assert proc.returncode == 0 and "nothing to do" in proc.stdout
    assert list_backups(local) == before and not changed_files(local, lesson)


def _spawn_reset(root: Path) -> pexpect.spawn:
    return pexpect.spawn(COURSE_SCRIPT, ["reset", "1"], env=course_env(root), cwd=str(root), encoding="utf-8",
                         timeout=60)


def test_reset_asks_first_and_no_means_no(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    _student(root).write_bytes(b"# keep me\n")
    child = _spawn_reset(root)
    child.expect(r"backed up first.*\[y/N\]")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1 and _student(root).read_bytes() == b"# keep me\n"
    assert not list_backups(load_course(root))

    child = _spawn_reset(root)
    child.expect(r"\[y/N\]")
    child.sendline("y")
    child.expect("course reset --restore")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and _student(root).read_bytes() != b"# keep me\n"


def test_without_a_terminal_reset_needs_yes(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    _student(root).write_bytes(b"# keep me\n")
    proc = course(root, "reset", "1", stdin="")
    assert proc.returncode == 2 and "--yes" in proc.stderr and proc.stderr.count("\n") == 1
    assert _student(root).read_bytes() == b"# keep me\n"


def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    for args in (["reset"], ["reset", "1", "--list"], ["reset", "--restore", "no-such-backup", "--yes"],
                 ["reset", "99", "--yes"]):
        proc = course(root, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    quiz = next(l for l in COURSE.lessons if l.kind == "quiz")
    assert "no code to reset" in course(root, "reset", quiz.id, "--yes").stderr


def test_backups_made_in_the_same_second_stay_apart(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    local = load_course(root)
    started = time.time()
    for n in range(3):
        _student(root).write_bytes(f"# attempt {n}\n".encode())
        reset_lesson(local, local.lesson("1"))
    assert time.time() - started < 60
    kept = [(b.folder / MODULE).read_bytes() for b in list_backups(local)]
    assert kept == [f"# attempt {n}\n".encode() for n in range(3)]


def test_sync_starter_asks_first_and_says_where_the_backup_is(tmp_path: Path) -> None:
    """`course dev sync-starter` over a solved lesson: nothing is replaced without a yes, and the
    student's version is kept where the command says (and `--restore` brings it back)."""
    root = copy_course(tmp_path / "course")
    _student(root).write_bytes(b"# my solved lesson 1\n")
    refused = course(root, "dev", "sync-starter", stdin="")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert _student(root).read_bytes() == b"# my solved lesson 1\n"

    child = pexpect.spawn(COURSE_SCRIPT, ["dev", "sync-starter"], env=course_env(root), cwd=str(root),
                          encoding="utf-8", timeout=60)
    child.expect(r"capstone/src/\w+/context\.py.*backed up first.*\[y/N\]")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1 and _student(root).read_bytes() == b"# my solved lesson 1\n"

    synced = course(root, "dev", "sync-starter", "--yes")
    assert synced.returncode == 0, synced.stderr
    assert _student(root).read_bytes() == expected_starter(COURSE.solutions.parent)[MODULE]
    backup = find_backup(load_course(root), "latest")
    assert str(backup.folder.relative_to(root)) in synced.stdout and "--restore" in synced.stdout
    assert (backup.folder / MODULE).read_bytes() == b"# my solved lesson 1\n"
    assert course(root, "reset", "--restore", backup.name, "--yes").returncode == 0
    assert _student(root).read_bytes() == b"# my solved lesson 1\n"


def test_reset_notebook_brings_back_the_clean_copy_the_course_shipped(tmp_path: Path) -> None:
    """A notebook that no longer opens: `reset N --notebook` restores the newest clean committed copy
    (not the student's own commit with outputs), backs the broken one up, and `--restore` undoes it."""
    root = copy_course(tmp_path / "course")
    lesson = COURSE.lesson("1")
    notebook = root / lesson.notebook
    shipped = notebook.read_bytes()
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "the course"], check=True)
    ran = json.loads(shipped)
    next(c for c in ran["cells"] if c["cell_type"] == "code").update(execution_count=1, outputs=[
        {"output_type": "stream", "name": "stdout", "text": ["mcp 2.3.0\n"]}])
    notebook.write_text(json.dumps(ran))
    subprocess.run([*git, "commit", "-qam", "my work, with outputs"], check=True)

    notebook.write_bytes(b'{"cells": [ {"cell_type": "code", "sour')  # saved half-way: JupyterLab cannot open it
    proc = course(root, "reset", "1", "--notebook", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert notebook.read_bytes() == shipped
    backup = find_backup(load_course(root), "latest")
    assert (backup.folder / lesson.notebook).read_bytes().startswith(b'{"cells": [ {"cell_type"')
    assert "--restore" in proc.stdout and f"wrote {lesson.notebook}" in proc.stdout
    again = course(root, "reset", "1", "--notebook", "--yes")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert course(root, "reset", "--restore", backup.name, "--yes").returncode == 0
    assert notebook.read_bytes().startswith(b'{"cells": [ {"cell_type"')


def test_reset_notebook_without_git_history_is_one_line(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    proc = course(root, "reset", "1", "--notebook", "--yes")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "download it again" in proc.stderr
