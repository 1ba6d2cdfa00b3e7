"""The GitHub Classroom workflow in the student edition, written from course.toml.

GitHub Classroom shows points only from its own reporting actions: one
`education/autograding-command-grader` step per graded test, each with a `max-score` (a zero
exit code earns it), then `education/autograding-grading-reporter`, which adds them up and
writes "Points X/Y" onto the check run of the job named `run-autograding-tests`. So each
available lesson is one test worth its visible checks' points, and the score grows lesson by
lesson as the student works. The reporter marks its step failed while any lesson fails; the step
is allowed to fail (`continue-on-error`), so a run is green once grading ran and the points say
how far the student got, instead of a red run for most of the term.

The command grader runs its command with only PATH and HOME from the job's environment, so the
course is installed first (`uv sync`, cached by setup-uv) and each test calls the installed
`course` directly. Classroom runs in the student's own repository, on code they control: its
score is theirs to fake, and `course grade` is the grade that counts (the README says so).
"""

from __future__ import annotations

import math

from checker.registry import Course, Lesson
from checker.runner.catalog import lesson_points

REPORTER = "education/autograding-grading-reporter@v1"
GRADER = "education/autograding-command-grader@v1"


def step_id(lesson: Lesson) -> str:
    """lesson-3 -> lesson3: the reporter finds results in $<ID>_RESULTS, so ids stay alphanumeric."""
    return lesson.id.replace("-", "")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def workflow(course: Course) -> str:
    lessons = [lesson for lesson in course.lessons if lesson.available]
    # The Ubuntu packages of the programs the lessons' checks start (uv, from PyPI, comes from setup-uv).
    packages = sorted({program.apt for program in course.needed_programs if program.apt})
    minutes = max(5, math.ceil(2 * course.lesson_timeout / 60))
    lines = [
        "# GitHub Classroom autograding, written by `course release` from course.toml.",
        "# One graded test per lesson, worth its checks' points when `course check` passes them all; the",
        "# reporter adds them up for Classroom (\"Points X/Y\"). A run is green once grading ran: the points say",
        "# how far you are. This runs in your own repository, so it is practice feedback, not your grade.",
        "name: Autograding Tests",
        "on:",
        "  push:",
        "  workflow_dispatch:",
        "  repository_dispatch:",
        "permissions:",
        "  checks: write",
        "  actions: read",
        "  contents: read",
        "jobs:",
        "  run-autograding-tests:",
        "    runs-on: ubuntu-latest",
        f"    timeout-minutes: {minutes * len(lessons) + 15}",
        "    if: github.actor != 'github-classroom[bot]'",
        "    steps:",
        "      - name: Checkout code",
        "        uses: actions/checkout@v4",
        "      - name: Install uv (its cache keyed on uv.lock)",
        "        uses: astral-sh/setup-uv@v6",
        "        with:",
        "          enable-cache: true",
        "          cache-dependency-glob: uv.lock",
    ]
    if packages:
        lines += [
            "      - name: Install the programs the lessons' checks start",
            f"        run: sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends "
            f"{' '.join(packages)}",
        ]
    lines += [
        "      - name: Install the course",
        "        run: uv sync --frozen",
    ]
    for lesson in lessons:
        name = f"{lesson.id}: {lesson.title}"
        lines += [
            f"      - name: {_quoted(name)}",
            f"        id: {step_id(lesson)}",
            f"        uses: {GRADER}",
            "        with:",
            f"          test-name: {_quoted(name)}",
            f"          command: .venv/bin/course check {lesson.id} --no-hints",
            f"          timeout: {minutes}",
            f"          max-score: {lesson_points(course, lesson)}",  # what `course check` awards: visible checks
        ]
    lines += [
        "      - name: Autograding Reporter",
        f"        uses: {REPORTER}",
        "        continue-on-error: true",
        "        env:",
        *(f"          {step_id(lesson).upper()}_RESULTS: \"${{{{ steps.{step_id(lesson)}.outputs.result }}}}\""
          for lesson in lessons),
        "        with:",
        f"          runners: {','.join(step_id(lesson) for lesson in lessons)}",
    ]
    return "\n".join(lines) + "\n"
