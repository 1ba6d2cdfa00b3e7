"""The chapter quiz (lesson 10): question bank, answer keys, grading, terminal and notebook quiz.

    quiz/bank.toml          the questions (ships to students; no answers, no explanations)
    quiz/key.toml           the instructor's plain key and explanations (never shipped)
    quiz/key.hashed.toml    the student edition of the key (salted digests, sealed explanations)
    quiz/answers.toml       a student's answers (theirs; written by `course quiz` and the notebook)
    quiz/exam/pool.toml     exam variants of every question, with their plain key (never shipped)
    quiz/exam.toml          a student's signed exam file, and quiz/exam-answers.toml their answers

In a notebook: `from checker.quiz import answer, review` (practice) and `exam` (an exam file). Maintainers:
`python -m checker.quiz build-key | validate | stats`.

Importing this package is cheap (no SDK, no rich): the names below load their module on first use.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "answer": "checker.quiz.notebook",
    "show": "checker.quiz.notebook",
    "progress": "checker.quiz.notebook",
    "review": "checker.quiz.notebook",
    "exam": "checker.quiz.notebook",
    "take_quiz": "checker.quiz.ui",
    "grade_lesson": "checker.quiz.grading",
    "QuizResult": "checker.quiz.grading",
    "QuizError": "checker.quiz.bank",
    "load_bank": "checker.quiz.bank",
    "load_settings": "checker.quiz.bank",
    "grade_submission_quiz": "checker.quiz.grading",
    "ExamSetup": "checker.quiz.grading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'checker.quiz' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
