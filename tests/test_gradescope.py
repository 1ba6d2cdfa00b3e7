"""`course export gradescope`: the zip holds what grading needs and nothing it must not, and it works
on Gradescope's Ubuntu images as Gradescope runs it.

The fresh-root test builds an Ubuntu 24.04 and a 22.04 root with debootstrap, runs `setup.sh` in it
and then `run_autograder` under a seccomp filter that refuses namespaces as Docker's default profile
does (so bubblewrap cannot start, as on Gradescope), for an honest student who hands in a signed
exam and for one who tries to read the instructor's files. `results.json` must match Gradescope's
documented format (tests/data/gradescope-results.schema.json).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import jsonschema
import pytest

from checker.grading.gradescope import Settings, build_zip, setup_sh
from tests import fresh_root
from tests.conftest import COURSE
from tests.exam_helpers import SECRET, answers_text, as_exam, exam_file, form, right_answers

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

SCHEMA = json.loads((Path(__file__).parent / "data" / "gradescope-results.schema.json").read_text())
CODE = [lesson.id for lesson in COURSE.lessons if lesson.available and lesson.kind == "code"]
QUIZ = next(lesson.id for lesson in COURSE.lessons if lesson.kind == "quiz")
STUDENT = "ada@example.edu"


def _zip(tmp_path: Path, quiz: str = "none") -> tuple[Path, set[str]]:
    secret = tmp_path / "exam-secret"
    secret.write_text(SECRET.hex() + "\n")
    lessons = CODE + ([QUIZ] if quiz != "none" else [])
    out = tmp_path / "autograder.zip"
    build_zip(COURSE, out, Settings(lessons, quiz, "midterm" if quiz == "exam" else None), secret)
    with zipfile.ZipFile(out) as archive:
        return out, set(archive.namelist())


def test_zip_holds_the_grader_and_no_answers(tmp_path: Path) -> None:
    out, names = _zip(tmp_path)
    assert {"setup.sh", "run_autograder", "gradescope.json", "uv.lock", "course.toml"} <= names
    hidden = {p.relative_to(COURSE.root).as_posix() for p in (COURSE.checks_dir / "hidden").glob("*.py")}
    assert hidden and hidden <= names, "the hidden checks grade on Gradescope too"
    leaked = [n for n in names if n.startswith(("solutions/", "tests/", ".course/", "quiz/exam/"))
              or n in ("quiz/key.toml", "quiz/answers.toml")]
    assert not leaked, f"the zip holds material grading does not need: {leaked}"
    with zipfile.ZipFile(out) as archive:
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        settings = json.loads(archive.read("gradescope.json"))
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert settings["private"] == ["checker/checks/hidden"]


def test_exam_zip_holds_the_pool_and_secret_readable_by_root_only(tmp_path: Path) -> None:
    out, names = _zip(tmp_path, "exam")
    assert {"quiz/exam/pool.toml", ".course/exam-secret"} <= names, "grading exams needs the pool and the secret"
    assert "quiz/key.toml" not in names, "the practice key is never needed"
    with zipfile.ZipFile(out) as archive:
        script = archive.read("setup.sh").decode()
        assert archive.read(".course/exam-secret").decode().strip() == SECRET.hex()
    line = next(l for l in script.splitlines() if l.startswith("chmod -R go-rwx"))
    for private in ("checker/checks/hidden", "quiz/exam", ".course"):
        assert f'"$SOURCE/{private}"' in line


def test_setup_sh_never_touches_the_system_pip_and_installs_what_lessons_need() -> None:
    script = setup_sh(COURSE, Settings(CODE))
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    pips = [line for line in script.splitlines() if "pip install" in line]
    assert pips and all(line.strip().startswith("/opt/course-uv/bin/pip install") for line in pips), pips
    needs = {need for lesson in COURSE.lessons if lesson.id in CODE for need in lesson.needs} - {"uv"}
    install = next(line for line in script.splitlines() if line.startswith("apt-get install"))
    assert needs and all(need in install for need in needs) and "bubblewrap" in install
    only_one = setup_sh(COURSE, Settings(["lesson-1"]))
    assert "redis-server" not in only_one and "nginx" not in only_one, "lesson 1 needs neither"


# ---------------------------------------------------------------- in a fresh Ubuntu root, as Gradescope runs it

WHY_NOT = fresh_root.missing_tools()

# Reads every instructor file it can reach (hidden checks, the exam pool and secret, the grader's work
# folders) and reports what it found in every check's failure; a visible check file, which it may read,
# shows the attack really ran.
SNOOP = r'''
import glob as _glob
_leaked = []
for _pattern in ("/autograder/source/checker/checks/hidden/*.py", "/autograder/source/quiz/exam/*",
                 "/autograder/source/.course/*", "/tmp/course-*/**/*.toml", "/tmp/course-*/checks/*"):
    for _path in _glob.glob(_pattern, recursive=True):
        try:
            _leaked.append(_path + ":" + open(_path).read()[:400])
        except OSError:
            pass
_control = open("/autograder/source/checker/checks/lesson01.py").read(40).startswith('"""')
raise RuntimeError(f"SNOOP control={_control} leaked={_leaked}")
'''


def _submission(dest: Path, *, snoop: bool) -> None:
    """A student's handed-in repository: the reference solution (or the starter with SNOOP) and a signed exam."""
    shutil.copytree(COURSE.starter.parent if snoop else COURSE.solutions.parent, dest / "capstone",
                    ignore=shutil.ignore_patterns("__pycache__", "quiz-answers.toml"))
    if snoop:
        module = dest / "capstone" / "src" / COURSE.package / "context.py"
        text = module.read_text()
        module.write_text(text.replace("from __future__ import annotations\n",
                                       "from __future__ import annotations\n" + SNOOP, 1))
    data = form(STUDENT)
    exam = as_exam(data)
    (dest / "quiz").mkdir()
    (dest / "quiz" / "exam.toml").write_text(exam_file(data), encoding="utf-8")
    (dest / "quiz" / "exam-answers.toml").write_text(answers_text(exam, right_answers(exam) if not snoop else {}),
                                                     encoding="utf-8")


def _run_autograder(root: Path, submission: Path) -> dict:
    autograder = root / "autograder"
    for folder in ("submission", "results"):
        shutil.rmtree(autograder / folder, ignore_errors=True)
    shutil.copytree(submission, autograder / "submission")
    (autograder / "results").mkdir()
    (autograder / "submission_metadata.json").write_text(json.dumps(
        {"id": 1, "users": [{"email": STUDENT, "id": 7, "name": "Ada", "sid": "s1"}]}))
    done = fresh_root.run(root, "cd /autograder && /autograder/run_autograder", container=True, timeout=1800)
    results = autograder / "results" / "results.json"
    assert results.is_file(), f"run_autograder wrote no results.json:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    data = json.loads(results.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["extra_data"] == {"sandbox": "users"}, "without namespaces, the fallback sandbox must run"
    assert "bubblewrap" in done.stderr and "cannot make a sandbox here" in done.stderr, done.stderr[-2000:]
    return data


@pytest.mark.skipif(bool(WHY_NOT), reason=f"no fresh Ubuntu root here: {WHY_NOT}")
@pytest.mark.parametrize("suite", ["noble", "jammy"])
def test_autograder_builds_and_grades_in_a_fresh_ubuntu(suite: str, tmp_path: Path) -> None:
    archive, _ = _zip(tmp_path, "exam")
    root = Path(f"/var/tmp/course-gradescope-{suite}-{tmp_path.name}")
    shutil.rmtree(root, ignore_errors=True)
    try:
        fresh_root.ubuntu_root(suite, root)
        source = root / "autograder" / "source"
        source.mkdir(parents=True)
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(source)
        for name in ("setup.sh", "run_autograder"):
            (source / name).chmod(0o755)
        shutil.copyfile(source / "run_autograder", root / "autograder" / "run_autograder")
        (root / "autograder" / "run_autograder").chmod(0o755)
        built = fresh_root.run(root, "cd /autograder/source && ./setup.sh", container=True, timeout=1800)
        assert built.returncode == 0, f"setup.sh failed on {suite}:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"

        _submission(tmp_path / "honest", snoop=False)
        honest = _run_autograder(root, tmp_path / "honest")
        tests = honest["tests"]
        assert not [t for t in tests if "not graded" in t["name"]], "setup.sh installed everything the lessons need"
        quiz = [t for t in tests if t["number"].startswith(QUIZ)]
        assert quiz and all(t["status"] == "passed" for t in quiz), "the exam is graded from the key in the zip"
        failed = [t["name"] + ": " + t["output"][:200] for t in tests if t["status"] != "passed"]
        assert not failed, f"the reference solution lost points on {suite}: {failed}"

        _submission(tmp_path / "snoop", snoop=True)
        snoop = _run_autograder(root, tmp_path / "snoop")
        text = json.dumps(snoop)
        assert "SNOOP control=True leaked=[]" in text, "the attack ran, read what it may, and found nothing private"
        assert SECRET.hex() not in text
        assert not any(t["status"] == "passed" for t in snoop["tests"] if t["number"].startswith("lesson-1."))
        assert not fresh_root.processes_in(root), "grading left processes running"

        # The instructor-only files are there, and root alone may read them.
        for private in ("checker/checks/hidden", "quiz/exam", ".course"):
            assert (source / private).stat().st_mode & 0o077 == 0, private
    finally:
        for pid in fresh_root.processes_in(root):
            subprocess.run(["kill", "-9", str(pid)], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a private /opt")
def test_setup_sh_installs_a_readable_uv_managed_python_when_the_image_has_none(tmp_path: Path) -> None:
    """Ubuntu 22.04's Python is 3.10: setup.sh then asks uv for a 3.11 in /opt/course-python, never /root.

    Run with stand-ins for uv and a 3.10 python3 (no download), in a mount namespace with its own /opt.
    """
    script = setup_sh(COURSE, Settings(CODE))
    function = script[script.index("course_python() {"):script.index("\n}\n", script.index("course_python() {")) + 3]
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in ("mkdir", "chmod"):
        (stubs / tool).symlink_to(shutil.which(tool))  # type: ignore[arg-type]
    (stubs / "python3").write_text("#!/bin/sh\nexit 1\n")  # too old: sys.version_info < (3, 11)
    (stubs / "apt-get").write_text("#!/bin/sh\necho apt-get was used >&2\nexit 1\n")
    (stubs / "uv").write_text(f"""#!/bin/sh
echo "$UV_PYTHON_INSTALL_DIR $*" >> {tmp_path}/uv.log
case "$1 $2" in
  "python install") mkdir -p "$UV_PYTHON_INSTALL_DIR/cpython-3.11/bin" &&
                    printf '#!/bin/sh\\n' > "$UV_PYTHON_INSTALL_DIR/cpython-3.11/bin/python3.11" &&
                    chmod 0700 "$UV_PYTHON_INSTALL_DIR/cpython-3.11/bin/python3.11" ;;
  "python find") [ "$UV_PYTHON_PREFERENCE" = only-managed ] && echo "$UV_PYTHON_INSTALL_DIR/cpython-3.11/bin/python3.11" ;;
esac
""")
    for stub in stubs.iterdir():
        if not stub.is_symlink():
            stub.chmod(0o755)
    body = (f"mount -t tmpfs tmpfs /opt && {function}\nUV={stubs}/uv\nPATH={stubs}\nfound=$(course_python)\n"
            f'echo "$found"; /usr/bin/stat -c %a "$found"')
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "/bin/bash", "-euc", body],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found, mode = done.stdout.split()
    assert found == "/opt/course-python/cpython-3.11/bin/python3.11" and mode == "755", done.stdout
    assert "apt-get was used" not in done.stderr
    assert (tmp_path / "uv.log").read_text().splitlines()[0] == "/opt/course-python python install 3.11"
