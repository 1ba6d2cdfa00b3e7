"""Helpers for the exam tests: the instructor's setup, a student's submission, answers that are right.

Nothing here writes to the course folder: submissions and exam files live under pytest's tmp_path.
"""

from __future__ import annotations

from pathlib import Path

from checker.quiz.bank import load_bank, load_settings
from checker.quiz.forms import Exam, ExamItem, build_exam, exam_text, parse_exam
from checker.quiz.grading import ExamSetup
from checker.quiz.keys import load_plain_key
from checker.quiz.pool import load_pool
from checker.quiz.tomlw import dumps_sections
from tests.conftest import COURSE

SETTINGS = load_settings(COURSE)
BANK = load_bank(SETTINGS.bank)
PRACTICE_KEY = load_plain_key(SETTINGS.plain_key, BANK)
POOL = load_pool(SETTINGS.exam_pool, BANK)
SECRET = bytes(range(32))                      # a fixed test secret: every run draws the same forms
SETUP = ExamSetup(BANK, POOL, SECRET)
TOTAL = POOL.points(BANK)
QUIZ = SETTINGS.lesson


def form(student: str, name: str = "midterm", secret: bytes = SECRET) -> dict[str, object]:
    return build_exam(COURSE.title, BANK, POOL, secret, name, student)


def as_exam(data: dict[str, object]) -> Exam:
    return parse_exam(data, Path("exam.toml"))


def shown_letters(item: ExamItem, canonical: list[str]) -> list[str]:
    """The letters a student sees for the pool's letters `canonical` (item.order: canonical index per position)."""
    q = item.question
    return sorted(q.letters[item.order.index(q.letters.index(letter))] for letter in canonical)


def right_answers(exam: Exam) -> dict[str, object]:
    answers: dict[str, object] = {}
    for item in exam.items:
        key = POOL.key[item.question.id]
        if item.question.is_choice:
            letters = shown_letters(item, list(key.correct))
            answers[item.question.id] = letters if item.question.is_multi else letters[0]
        else:
            answers[item.question.id] = key.shown
    return answers


def answers_text(exam: Exam, answers: dict[str, object], signature: str | None = None) -> str:
    meta = {"name": exam.name, "student": exam.student, "signature": signature or exam.signature}
    return dumps_sections({"exam": meta, "answers": answers})


def submission(root: Path, exam_file: str | None, answers_file: str | None = None) -> Path:
    """A handed-in course copy holding (some of) the two exam files."""
    (root / "quiz").mkdir(parents=True, exist_ok=True)
    if exam_file is not None:
        (root / "quiz" / "exam.toml").write_text(exam_file, encoding="utf-8")
    if answers_file is not None:
        (root / "quiz" / "exam-answers.toml").write_text(answers_file, encoding="utf-8")
    return root


def exam_file(data: dict[str, object]) -> str:
    return exam_text(data, "exam.toml")
