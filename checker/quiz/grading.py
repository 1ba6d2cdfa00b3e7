"""Grade quiz answers: the practice quiz against the hashed key, an exam against the plain key.

Practice grading needs no plain answer: choice answers are checked option by option against
salted digests (so a multiple-select answer earns partial credit), short answers are normalised
and hashed. Explanations are opened only for what the student answered: why their pick is wrong,
or why their right answer is right. An unanswered question shows no explanation, so an empty
answers file reveals nothing.

`course grade` calls `grade_submission_quiz` once per submission. It counts the quiz in one of
two ways the instructor chooses: an exam (signed exam files, the instructor's plain key in the
exam pool) or, when asked explicitly, the practice quiz, whose key is in the students' hands.
Nothing a student puts in their files makes it raise: a file that cannot be graded scores 0 out
of the quiz's real total, with the reason in the feedback.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from checker.quiz.answers import (
    AnswerSheet,
    BadAnswer,
    canonical_letters,
    is_blank,
    load_sheet,
    option_order,
    short_answer,
)
from checker.quiz.bank import Bank, Question, QuizError, QuizSettings, load_bank, load_settings
from checker.quiz.forms import Exam, issued_to, load_exam_sheet, load_secret, pool_drift, read_exam, verify
from checker.quiz.keys import HashedAnswer, load_hashed_key
from checker.quiz.pool import Pool, load_pool
from checker.quiz.safe import shown
from checker.registry import Course, CourseError, Lesson
from checker.runner.catalog import CheckInfo
from checker.runner.results import CheckResult, LessonResult

Status = Literal["right", "partial", "wrong", "unanswered", "invalid"]


@dataclass
class QuizResult(LessonResult):
    """A lesson result whose `ok` means "reached the pass mark", not "every question right"."""

    pass_mark: float = 0.7

    @property
    def ok(self) -> bool:
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


class Judge(Protocol):
    """What grading asks of a key: the hashed key answers from digests, the plain key in the clear."""

    def option_correct(self, index: int, letter: str) -> bool: ...
    def option_why(self, index: int, letter: str) -> str: ...
    def accepts(self, normalised: str) -> bool: ...
    def answer_why(self, normalised: str) -> str | None: ...


def _grade_choice(q: Question, key: Judge, value: object, order: list[int]) -> Verdict:
    shown_as = {q.letters[canonical]: q.letters[position] for position, canonical in enumerate(order)}
    picked = canonical_letters(value, q, order)
    correct = {letter for i, letter in enumerate(q.letters) if key.option_correct(i, letter)}
    given = ", ".join(sorted(shown_as[p] for p in picked))

    def explain(letter: str) -> str:
        index = q.letters.index(letter)
        return f"{shown_as[letter]} ({option_text(q, index)}): {key.option_why(index, letter)}"

    if not q.is_multi:
        letter = picked[0]
        status: Status = "right" if letter in correct else "wrong"
        return Verdict(q, status, 1.0 if status == "right" else 0.0, given, [explain(letter)])
    # Each correct option found earns 1/(correct options); each wrong option picked costs 1/(wrong
    # options). Ticking every box, or none, earns 0, and so does guessing on average.
    hits, false_picks = set(picked) & correct, set(picked) - correct
    fraction = max(0.0, len(hits) / len(correct) - len(false_picks) / (len(q.options) - len(correct)))
    if set(picked) == correct:
        explained = [explain(letter) for letter in sorted(correct, key=shown_as.__getitem__)]
        return Verdict(q, "right", 1.0, given, explained)
    feedback = [explain(letter) for letter in sorted(false_picks, key=shown_as.__getitem__)]
    missing = len(correct - set(picked))
    if missing:
        feedback.append(f"{missing} correct option{'s are' if missing > 1 else ' is'} not selected.")
    return Verdict(q, "partial" if fraction > 0 else "wrong", fraction, given, feedback)


def _grade_short(q: Question, key: Judge, value: object) -> Verdict:
    answer = short_answer(value, q)
    given = shown(value)
    explanation = key.answer_why(answer)
    if key.accepts(answer):
        return Verdict(q, "right", 1.0, given, [explanation or "right."])
    if explanation:
        return Verdict(q, "wrong", 0.0, given, [f"{given}: {explanation}"])
    return Verdict(q, "wrong", 0.0, given, [f"{given!r} is not the expected answer."])


def grade_in_order(q: Question, key: Judge, value: object, order: list[int]) -> Verdict:
    """One answer, its options shown to the student in `order` (canonical index of each shown option)."""
    if is_blank(value):
        return Verdict(q, "unanswered")
    try:
        return _grade_choice(q, key, value, order) if q.is_choice else _grade_short(q, key, value)
    except BadAnswer as exc:
        return Verdict(q, "invalid", 0.0, shown(value), [f"{q.id}: {exc}"])


def grade_question(q: Question, key: Judge, value: object, seed: str) -> Verdict:
    """One practice answer; `seed` names the option order the student saw (see answers.option_order)."""
    return grade_in_order(q, key, value, option_order(seed, q.id, len(q.options)))


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
    taught = next((lesson for lesson in course.lessons if lesson.number == q.lesson), None)
    return f"revisit lesson {q.lesson}" + (f", {taught.title} ({taught.notebook})" if taught else "")


def _check(verdict: Verdict, settings: QuizSettings, check_id: str = "") -> CheckResult:
    """One question as a check; `check_id` (exams: the practice question's id) keeps gradebook columns
    aligned across students who got different variants."""
    q = verdict.question
    hint = _revisit(settings.course, q)
    title = f"[L{q.lesson}] {q.title}"
    cid = check_id or q.id
    if verdict.status == "right":
        return CheckResult(id=cid, title=title, points=q.points, outcome="passed")
    if verdict.status == "unanswered":
        return CheckResult(id=cid, title=title, points=q.points, outcome="failed", message=f"{q.id}: not answered yet")
    if verdict.status == "invalid":
        message = verdict.feedback[0]
    else:
        lead = "partly right" if verdict.status == "partial" else "you answered"
        message = (
            f"{lead} {verdict.given} — " + " ".join(verdict.feedback) if q.is_choice else " ".join(verdict.feedback)
        )
    fraction = round(verdict.fraction, 4) if q.is_multi and verdict.status == "partial" else None
    return CheckResult(id=cid, title=title, points=q.points, outcome="failed", message=message,
                       hint=hint, fraction=fraction)


def _unknown_ids(answers: dict[str, object], known: set[str], where: str) -> list[CheckResult]:
    """Zero-point notes for answers to questions that are not there (at most five, each one line)."""
    unknown = [qid for qid in answers if qid not in known]
    notes = [CheckResult(id="answers-file", title=f"unknown question {shown(qid, 40)!r} in {where}", points=0,
                         outcome="skipped", message=f"{shown(qid, 40)}: no such question in the quiz, so this answer "
                         f"is ignored (a typo in the id?)") for qid in unknown[:5]]
    if len(unknown) > 5:
        notes.append(CheckResult(id="answers-file", title=f"{len(unknown) - 5} more unknown questions in {where}",
                                 points=0, outcome="skipped", message="ignored"))
    return notes


def rejected(lesson: Lesson, title: str, edition: str, total: int, reason: str, pass_mark: float,
             check_id: str = "answers-file") -> QuizResult:
    """A quiz that could not be graded because of the student's files: 0 out of its real total, the
    reason as the one failed check (so the gradebook never drops the quiz from the total)."""
    exam_file = check_id == "exam-file"
    hint = ("hand in the exam file you were given, unchanged (ask your instructor for a new copy if it is lost)"
            if exam_file else "fix the answers file by hand (the comment at its top explains the format)")
    check = CheckResult(id=check_id, title=f"{'exam file' if exam_file else 'answers file'} not graded",
                        points=total, outcome="failed", message=reason, hint=hint)
    return QuizResult(lesson=lesson.id, title=title, edition=edition, checks=[check], pass_mark=pass_mark)


def question_hints(course: Course, lesson: Lesson) -> list[CheckInfo]:
    """`course hint lesson-10`: every question as a check, its hint naming the lesson to revisit."""
    settings = load_settings(course, lesson)
    infos = []
    for q in load_bank(settings.bank):
        infos.append(CheckInfo(id=q.id, title=f"[L{q.lesson}] {q.title}", points=q.points, hint=_revisit(course, q)))
    return infos


def _grade_practice(settings: QuizSettings, bank: Bank, key: dict[str, HashedAnswer], path: Path, shown_path: str,
                    result: QuizResult, select: list[str] | None = None, seed: str | None = None) -> QuizResult:
    """Fill `result` with the practice grade of the answers file at `path` (never raises for its content)."""
    try:
        sheet = load_sheet(path)
    except QuizError as exc:
        return rejected(settings.lesson, result.title, result.edition, bank.points, str(exc), settings.pass_mark)
    notes: list[CheckResult] = []
    if not sheet.exists:
        notes.append(
            CheckResult(
                id="answers-file",
                title=f"no answers yet in {shown_path}",
                points=0,
                outcome="skipped",
                message="take the quiz with `uv run course quiz` or in lessons/10-quiz.ipynb; "
                "answers are saved as you go",
            )
        )
    notes += _unknown_ids(sheet.answers, {q.id for q in bank}, shown_path)
    verdicts = grade_sheet(bank, key, sheet, sheet.seed if sheet.seed is not None else
                           (seed if seed is not None else sheet.effective_seed(settings)), only=select)
    result.checks = notes + [_check(v, settings) for v in verdicts]
    return result


def grade_lesson(course: Course, lesson: Lesson, against: str = "starter",
                 select: list[str] | None = None) -> QuizResult:
    """`run_lesson` for a quiz lesson: grade the practice answers file `against` stands for."""
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
    shown_path = _display(path, course)
    edition = "solutions" if against == "solutions" else ("your answers" if against == "starter" else against)
    title = f"{lesson.title} — pass mark {settings.pass_percent}%"
    result = QuizResult(lesson=lesson.id, title=title, edition=f"{edition}: {shown_path}", pass_mark=settings.pass_mark)
    result = _grade_practice(settings, bank, key, path, shown_path, result, select)
    result.duration = round(time.monotonic() - started, 3)
    return result


# ---------------------------------------------------------------- `course grade`: one submission

@dataclass(frozen=True)
class ExamSetup:
    """What grading an exam needs, loaded once per batch from the instructor edition."""

    bank: Bank
    pool: Pool
    secret: bytes
    name: str | None = None             # grade only this exam (None: any exam signed with the secret)

    @classmethod
    def load(cls, course: Course, secret_file: Path | None = None, name: str | None = None) -> ExamSetup:
        """Raises QuizError (one line) when the instructor's pool, key or secret is missing or broken."""
        settings = load_settings(course)
        bank = load_bank(settings.bank)
        return cls(bank, load_pool(settings.exam_pool, bank), load_secret(secret_file or settings.exam_secret), name)


def _course_copy(submission: Path, course: Course, settings: QuizSettings) -> Path:
    """The folder of a submission that holds its course files: the copy itself, or its only top folder
    (zips often add one); given the copy's src/ folder (as code lessons use), the copy above it."""
    starter = course.starter.relative_to(course.root)
    if submission.parts[-len(starter.parts):] == starter.parts:
        return submission.parents[len(starter.parts) - 1]
    markers = (settings.answers.relative_to(course.root).parent, starter)
    if any((submission / marker).is_dir() for marker in markers):
        return submission
    children = (
        [c for c in sorted(submission.iterdir()) if c.is_dir() and not c.is_symlink()] if submission.is_dir() else []
    )
    return next((c for c in children if any((c / marker).is_dir() for marker in markers)), submission)


def _grade_exam(settings: QuizSettings, setup: ExamSetup, copy: Path, student: str, result: QuizResult) -> QuizResult:
    course, lesson = settings.course, settings.lesson
    exam_rel = settings.exam_file.relative_to(course.root)
    answers_rel = settings.exam_answers.relative_to(course.root)

    def reject(reason: str, check_id: str = "exam-file") -> QuizResult:
        return rejected(lesson, result.title, result.edition, setup.pool.points(setup.bank), reason,
                        settings.pass_mark, check_id)

    if not (copy / exam_rel).exists() and not (copy / exam_rel).is_symlink():
        return reject(f"no exam file {exam_rel} in the submission: hand in the exam file you answered")
    try:
        exam: Exam = read_exam(copy / exam_rel)
    except QuizError as exc:
        return reject(str(exc))
    problem = verify(exam, setup.secret)
    if problem:
        return reject(f"{exam_rel} was rejected: {problem}")
    if not issued_to(exam.student, student):
        return reject(f"{exam_rel} was issued to {exam.student}, not to {shown(student, 40)}")
    if setup.name and exam.name != setup.name:
        return reject(f"{exam_rel} is the exam {exam.name!r}; this grading run grades {setup.name!r}")
    drift = pool_drift(exam, setup.pool)
    if drift:
        result.error = f"cannot grade {exam.student}'s exam: {drift}"  # the instructor's problem, not the student's
        return result
    result.title = f"{lesson.title} — exam {exam.name}, pass mark {settings.pass_percent}%"
    try:
        sheet = load_exam_sheet(copy / answers_rel)
    except QuizError as exc:
        return reject(str(exc), "answers-file")
    if sheet.exists and sheet.signature != exam.signature:
        return reject(f"the answers in {answers_rel} were given for a different exam file than {exam_rel}",
                      "answers-file")
    notes = _unknown_ids(sheet.answers, {item.question.id for item in exam.items}, str(answers_rel))
    if not sheet.exists:
        notes.append(CheckResult(id="answers-file", title=f"no {answers_rel} in the submission", points=0,
                                 outcome="skipped", message="no exam answers were handed in"))
    checks = []
    for item in exam.items:
        question = setup.pool.get(item.question.id)
        assert question is not None  # pool_drift checked it
        verdict = grade_in_order(
            question, setup.pool.key[question.id], sheet.answers.get(question.id), list(item.order)
        )
        checks.append(_check(verdict, settings, check_id=question.idea))
    result.checks = notes + sorted(checks, key=lambda c: [q.id for q in setup.bank].index(c.id))
    return result


def grade_submission_quiz(course: Course, lesson: Lesson, submission: Path, *, student: str,
                          exam: ExamSetup | None) -> LessonResult:
    """The quiz's result for one submission of `course grade`. Never raises for anything in the submission.

    `submission` is the unpacked copy (or its src/ folder); `student` the submission's id, which an
    exam file must have been issued to (the same id, or `<assignment>-<id>`). With `exam`, grades the
    signed exam file and its answers from the instructor's plain key; with `exam=None`, grades the
    practice answers file against the hashed key (only when the instructor asked for the practice quiz:
    its key is in the students' hands). Every problem with the student's files is a result of 0 out of
    the quiz's total with the reason; only a problem on the grader's side sets `error`.
    """
    started = time.monotonic()
    try:
        settings = load_settings(course, lesson)
        bank = exam.bank if exam else load_bank(settings.bank)
        key = {} if exam else load_hashed_key(settings.key, bank)
    except QuizError as exc:
        return LessonResult(lesson.id, lesson.title, str(submission), error=str(exc))
    mode = "exam" if exam else "practice quiz"
    result = QuizResult(lesson=lesson.id, title=f"{lesson.title} ({mode}) — pass mark {settings.pass_percent}%",
                        edition=f"{mode}: {shown(student, 60)}", pass_mark=settings.pass_mark)
    try:
        copy = _course_copy(submission, course, settings)
        if exam is not None:
            result = _grade_exam(settings, exam, copy, student, result)
        else:
            rel = settings.answers.relative_to(course.root)
            result = _grade_practice(settings, bank, key, copy / rel, str(rel), result, seed="")
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one student's files never end a batch
        result = rejected(lesson, result.title, result.edition, exam.pool.points(bank) if exam else bank.points,
                          f"the quiz files could not be graded ({type(exc).__name__}: {shown(str(exc), 120)})",
                          settings.pass_mark)
    result.duration = round(time.monotonic() - started, 3)
    return result
