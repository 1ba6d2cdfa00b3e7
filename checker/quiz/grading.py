"""Grade an answers file against the hashed key: one CheckResult per question.

Grading needs no plain answer: choice answers are checked option by option against salted
digests (so a multiple-select answer earns partial credit), short answers are normalised and
hashed. Explanations are opened only for what the student answered: why their pick is wrong,
or why their right answer is right. An unanswered question shows no explanation, so an empty
answers file reveals nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from checker.runner.catalog import CheckInfo
from checker.quiz.answers import AnswerSheet, BadAnswer, canonical_letters, is_blank, load_sheet, option_order, short_answer
from checker.quiz.bank import Bank, Question, QuizError, QuizSettings, load_bank, load_settings
from checker.quiz.keys import HashedAnswer, load_hashed_key
from checker.registry import Course, CourseError, Lesson
from checker.runner.results import CheckResult, LessonResult

Status = Literal["right", "partial", "wrong", "unanswered", "invalid"]


@dataclass
class QuizResult(LessonResult):
    """A lesson result whose `ok` means "reached the pass mark", not "every question right"."""

    pass_mark: float = 0.7

    @property
    def ok(self) -> bool:  # type: ignore[override]
        graded = [c for c in self.checks if c.points > 0]
        return (not self.error and bool(graded) and self.available > 0
                and self.earned >= self.pass_mark * self.available - 1e-9)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> QuizResult:
        base = LessonResult.from_json(data)
        return cls(**{**base.__dict__, "pass_mark": float(data.get("pass_mark", 0.7))})  # type: ignore[arg-type]


@dataclass
class Verdict:
    question: Question
    status: Status
    fraction: float = 0.0
    given: str = ""                           # the answer as the student wrote it
    feedback: list[str] = field(default_factory=list)

    @property
    def points(self) -> float:
        return round(self.question.points * self.fraction, 2)


def option_text(question: Question, index: int, width: int = 60) -> str:
    first = question.options[index].strip().splitlines()[0].strip()
    more = len(question.options[index].strip().splitlines()) > 1
    text = first if len(first) <= width else first[: width - 1] + "…"
    return text + (" …" if more and len(text) < width else "")


def _grade_choice(q: Question, key: HashedAnswer, value: object, seed: str) -> Verdict:
    order = option_order(seed, q.id, len(q.options))
    shown = {q.letters[canonical]: q.letters[position] for position, canonical in enumerate(order)}
    picked = canonical_letters(value, q, seed)
    correct = {letter for i, letter in enumerate(q.letters) if key.option_correct(i, letter)}
    given = ", ".join(sorted(shown[p] for p in picked))

    def explain(letter: str) -> str:
        index = q.letters.index(letter)
        return f"{shown[letter]} ({option_text(q, index)}): {key.option_why(index, letter)}"

    if not q.is_multi:
        letter = picked[0]
        status: Status = "right" if letter in correct else "wrong"
        return Verdict(q, status, 1.0 if status == "right" else 0.0, given, [explain(letter)])
    # Each correct option found earns 1/(correct options); each wrong option picked costs 1/(wrong
    # options). Ticking every box, or none, earns 0, and so does guessing on average.
    hits, false_picks = set(picked) & correct, set(picked) - correct
    fraction = max(0.0, len(hits) / len(correct) - len(false_picks) / (len(q.options) - len(correct)))
    if set(picked) == correct:
        return Verdict(q, "right", 1.0, given, [explain(letter) for letter in sorted(correct, key=shown.get)])
    feedback = [explain(letter) for letter in sorted(false_picks, key=shown.get)]
    missing = len(correct - set(picked))
    if missing:
        feedback.append(f"{missing} correct option{'s are' if missing > 1 else ' is'} not selected.")
    return Verdict(q, "partial" if fraction > 0 else "wrong", fraction, given, feedback)


def _grade_short(q: Question, key: HashedAnswer, value: object) -> Verdict:
    answer = short_answer(value, q)
    given = str(value).strip()
    explanation = key.answer_why(answer)
    if key.accepts(answer):
        return Verdict(q, "right", 1.0, given, [explanation or "right."])
    if explanation:
        return Verdict(q, "wrong", 0.0, given, [f"{given}: {explanation}"])
    return Verdict(q, "wrong", 0.0, given, [f"{given!r} is not the expected answer."])


def grade_question(q: Question, key: HashedAnswer, value: object, seed: str) -> Verdict:
    if is_blank(value):
        return Verdict(q, "unanswered")
    try:
        return _grade_choice(q, key, value, seed) if q.is_choice else _grade_short(q, key, value)
    except BadAnswer as exc:
        return Verdict(q, "invalid", 0.0, str(value), [f"{q.id}: {exc}"])


def grade_sheet(bank: Bank, key: dict[str, HashedAnswer], sheet: AnswerSheet, seed: str,
                only: list[str] | None = None) -> list[Verdict]:
    wanted = set(only or ())
    return [grade_question(q, key[q.id], sheet.answers.get(q.id), seed) for q in bank if not wanted or q.id in wanted]


# ---------------------------------------------------------------- where the answers are

def answers_path(settings: QuizSettings, against: str = "starter") -> Path:
    """The answers file an edition stands for.

    starter: the student's file (course.toml `answers`, or $COURSE_QUIZ_ANSWERS); solutions: the
    reference answers; a path: that .toml file, or the submission folder it points into (a
    copy's `src/` folder, as for code lessons: its quiz/answers.toml two levels up is found).
    """
    if against == "starter":
        override = os.environ.get("COURSE_QUIZ_ANSWERS", "").strip()
        return Path(override).expanduser().resolve() if override else settings.answers
    if against == "solutions":
        return settings.reference_answers
    target = Path(against).expanduser().resolve()
    if target.suffix == ".toml":
        return target
    if not target.is_dir():
        raise CourseError(f"no such folder or answers file: {against}")
    candidates = [folder / name for folder in (target, target.parent, target.parent.parent)
                  for name in ("quiz/answers.toml", "quiz-answers.toml")]
    return next((c for c in candidates if c.is_file()), candidates[0])


def _display(path: Path, course: Course) -> str:
    try:
        return str(path.relative_to(course.root))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- the lesson result

def _revisit(course: Course, q: Question) -> str:
    taught = next((l for l in course.lessons if l.number == q.lesson), None)
    return f"revisit lesson {q.lesson}" + (f", {taught.title} ({taught.notebook})" if taught else "")


def _check(verdict: Verdict, settings: QuizSettings) -> CheckResult:
    q = verdict.question
    hint = _revisit(settings.course, q)
    title = f"[L{q.lesson}] {q.title}"
    if verdict.status == "right":
        return CheckResult(id=q.id, title=title, points=q.points, outcome="passed")
    if verdict.status == "unanswered":
        return CheckResult(id=q.id, title=title, points=q.points, outcome="failed", message=f"{q.id}: not answered yet")
    if verdict.status == "invalid":
        message = verdict.feedback[0]
    else:
        lead = "partly right" if verdict.status == "partial" else "you answered"
        message = f"{lead} {verdict.given} — " + " ".join(verdict.feedback) if q.is_choice else " ".join(verdict.feedback)
    fraction = round(verdict.fraction, 4) if q.is_multi and verdict.status == "partial" else None
    return CheckResult(id=q.id, title=title, points=q.points, outcome="failed", message=message,
                       hint=hint, fraction=fraction)


def question_hints(course: Course, lesson: Lesson) -> list[CheckInfo]:
    """`course hint lesson-10`: every question as a check, its hint naming the lesson to revisit."""
    settings = load_settings(course, lesson)
    infos = []
    for q in load_bank(settings.bank):
        infos.append(CheckInfo(id=q.id, title=f"[L{q.lesson}] {q.title}", points=q.points, hint=_revisit(course, q)))
    return infos


def grade_lesson(course: Course, lesson: Lesson, against: str = "starter",
                 select: list[str] | None = None) -> QuizResult:
    """`run_lesson` for a quiz lesson: grade the answers file `against` stands for."""
    if not lesson.available:
        raise CourseError(f"{lesson.id} ({lesson.title}) is coming soon")
    started = time.monotonic()
    settings = load_settings(course, lesson)
    bank = load_bank(settings.bank)
    key = load_hashed_key(settings.key, bank)
    unknown_select = [qid for qid in select or () if bank.get(qid) is None]
    if unknown_select:
        raise QuizError(f"{lesson.id} has no question {unknown_select[0]!r}; ids look like {bank.questions[0].id!r}")
    path = answers_path(settings, against)
    shown = _display(path, course)
    edition = "solutions" if against == "solutions" else ("your answers" if against == "starter" else against)
    title = f"{lesson.title} — pass mark {settings.pass_percent}%"
    result = QuizResult(lesson=lesson.id, title=title, edition=f"{edition}: {shown}", pass_mark=settings.pass_mark)
    try:
        sheet = load_sheet(path)
    except QuizError as exc:
        result.error = str(exc)
        result.duration = round(time.monotonic() - started, 3)
        return result
    notes: list[CheckResult] = []
    if not sheet.exists:
        notes.append(CheckResult(id="answers-file", title=f"no answers yet in {shown}", points=0, outcome="skipped",
                                 message="take the quiz with `course quiz` or in lessons/10-quiz.ipynb; "
                                         "answers are saved as you go"))
    for qid in sheet.answers:
        if bank.get(qid) is None:
            notes.append(CheckResult(id="answers-file", title=f"unknown question {qid!r} in {shown}", points=0,
                                     outcome="skipped", message=f"{qid}: no such question in the quiz, so this "
                                     f"answer is ignored (a typo in the id?)"))
    seed = sheet.effective_seed(settings)
    verdicts = grade_sheet(bank, key, sheet, seed, only=select)
    result.checks = notes + [_check(v, settings) for v in verdicts]
    result.duration = round(time.monotonic() - started, 3)
    return result
