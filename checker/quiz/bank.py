"""The question bank (`quiz/bank.toml`) and the quiz settings (the lesson-10 block of `course.toml`).

The bank holds what a student may read: prompts, code, options. It never holds an answer or an
explanation (those live in the key files, see `keys`), so it ships unchanged in the student
edition. Loading validates everything a reviewer could get wrong, and every problem is one line
that names the question.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from checker.registry import Course, CourseError, Lesson

Kind = Literal["single", "multi", "short", "predict"]
AnswerType = Literal["int", "identifier", "text"]

KINDS: tuple[str, ...] = ("single", "multi", "short", "predict")
ANSWER_TYPES: tuple[str, ...] = ("int", "identifier", "text")
LETTERS = "ABCDEFGH"
QID = re.compile(r"^l([1-9])-[a-z0-9]+(?:-[a-z0-9]+)*$")
# Options that make a question guessable or ambiguous (teaching.md §5.5): never in the bank.
BANNED_OPTION = re.compile(
    r"(?i:\b(all|none|both|either) of the (above|options)\b)|^[A-H](\s*(,|and|or|&)\s*[A-H])+\.?$"
)


class QuizError(CourseError):
    """A problem with the bank, the key or an answers file, reported as one line."""


@dataclass(frozen=True)
class Question:
    id: str
    lesson: int
    kind: Kind
    title: str
    prompt: str
    points: int = 1
    code: str = ""                       # shown with the prompt (and run by the tests for `predict`)
    options: tuple[str, ...] = ()        # choice questions; canonical order, letters A, B, ...
    code_options: bool = False           # render each option as code
    answer_type: AnswerType = "text"     # short answers (and predict questions without options)
    placeholder: str = ""                # what a short answer looks like, e.g. "a number"
    idea: str = ""                       # exam variants: the practice question whose idea it tests

    @property
    def is_choice(self) -> bool:
        return bool(self.options)

    @property
    def is_multi(self) -> bool:
        return self.kind == "multi"

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]

    @property
    def is_code_reading(self) -> bool:
        """Predict-the-output and code-reading questions (teaching.md: at least 40 % of the bank)."""
        return self.kind == "predict" or bool(self.code) or self.code_options

    @property
    def kind_label(self) -> str:
        if self.kind == "predict":
            return "predict the output"
        if self.kind == "multi":
            return "select all that apply"
        if self.kind == "short":
            return "short answer"
        return "single choice"


@dataclass(frozen=True)
class Bank:
    path: Path
    questions: tuple[Question, ...]
    _by_id: dict[str, Question] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id.update({q.id: q for q in self.questions})

    def get(self, qid: str) -> Question | None:
        return self._by_id.get(qid)

    def __getitem__(self, qid: str) -> Question:
        question = self._by_id.get(qid)
        if question is None:
            raise QuizError(f"there is no question {qid!r} in the quiz; ids look like 'l3-log-opt-in' "
                            f"(see {self.path.name})")
        return question

    def __iter__(self) -> Iterator[Question]:
        return iter(self.questions)

    def __len__(self) -> int:
        return len(self.questions)

    @property
    def points(self) -> int:
        return sum(q.points for q in self.questions)


@dataclass(frozen=True)
class QuizSettings:
    """The quiz's facts from the lesson-10 block of course.toml (the one registry)."""

    course: Course
    lesson: Lesson
    bank: Path
    key: Path                # the hashed key: what every edition grades with
    plain_key: Path          # the instructor's key (excluded from the student release)
    answers: Path            # the student's answers file
    reference_answers: Path  # what `--against solutions` grades
    pass_mark: float         # fraction of the points needed to pass, in (0, 1]
    seed_env: str            # environment variable that names the student (the shuffle seed)
    exam_pool: Path          # variants and their key (instructor edition only)
    exam_file: Path          # the student's signed exam, as handed in
    exam_answers: Path       # the student's exam answers, as handed in
    exam_secret: Path        # the instructor's signing secret (never in any edition)

    @property
    def pass_percent(self) -> int:
        return round(self.pass_mark * 100)


def quiz_lesson(course: Course) -> Lesson:
    for lesson in course.lessons:
        if lesson.kind == "quiz":
            return lesson
    raise QuizError("course.toml declares no lesson with kind = \"quiz\"")


def load_settings(course: Course, lesson: Lesson | None = None) -> QuizSettings:
    """The quiz settings of the lesson's block in course.toml (read once, by the registry)."""
    lesson = lesson or quiz_lesson(course)
    block = lesson.settings
    pass_mark = block.get("pass_mark", 0.7)
    if not isinstance(pass_mark, (int, float)) or not 0 < pass_mark <= 1:
        raise QuizError(f"course.toml: {lesson.id} pass_mark must be a fraction in (0, 1], not {pass_mark!r}")

    def path(name: str, default: str) -> Path:
        return course.root / str(block.get(name, default))

    return QuizSettings(
        course=course, lesson=lesson,
        bank=path("bank", "quiz/bank.toml"), key=path("key", "quiz/key.hashed.toml"),
        plain_key=path("plain_key", "quiz/key.toml"), answers=path("answers", "quiz/answers.toml"),
        reference_answers=path("reference_answers", "solutions/quiz-answers.toml"),
        pass_mark=float(pass_mark), seed_env=str(block.get("seed_env", "COURSE_STUDENT")),
        exam_pool=path("exam_pool", "quiz/exam/pool.toml"), exam_file=path("exam_file", "quiz/exam.toml"),
        exam_answers=path("exam_answers", "quiz/exam-answers.toml"),
        exam_secret=path("exam_secret", ".course/exam-secret"),
    )


def _text(entry: dict[str, object], name: str, where: str, required: bool = True) -> str:
    value = entry.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise QuizError(f"{where}: `{name}` must be a non-empty string")
    return value.strip("\n") if name == "code" else value.strip()


QUESTION_FIELDS = frozenset({"id", "lesson", "kind", "title", "prompt", "points", "code", "options",
                             "code_options", "answer_type", "placeholder"})


def parse_question(entry: dict[str, object], index: int, path: Path, extra: frozenset[str] = frozenset()) -> Question:
    """One `[[question]]` table, validated; `extra` names further fields the caller allows (e.g. `idea`)."""
    qid = entry.get("id")
    where = f"{path.name}: question #{index + 1}"
    if not isinstance(qid, str) or not QID.match(qid):
        raise QuizError(f"{where}: id {qid!r} must look like 'l3-short-name' (l<lesson>-<words>)")
    where = f"{path.name}: {qid}"
    lesson = entry.get("lesson")
    if lesson != int(QID.match(qid).group(1)):  # type: ignore[union-attr]
        raise QuizError(f"{where}: lesson = {lesson!r} does not match the id's l<N> prefix")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise QuizError(f"{where}: kind {kind!r} must be one of {', '.join(KINDS)}")
    unknown = set(entry) - QUESTION_FIELDS - extra
    if unknown:
        raise QuizError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} (answers and explanations "
                        f"belong in the key, never in the bank)")
    points = entry.get("points", 2 if kind == "multi" else 1)
    if not isinstance(points, int) or points < 1:
        raise QuizError(f"{where}: points must be a positive whole number")
    options = entry.get("options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) and o.strip() for o in options):
        raise QuizError(f"{where}: options must be a list of non-empty strings")
    options = [o.strip("\n") for o in options]
    if kind in ("single", "multi") and not options:
        raise QuizError(f"{where}: a {kind} question needs options")
    if kind == "short" and options:
        raise QuizError(f"{where}: a short-answer question has no options")
    if options:
        if not 3 <= len(options) <= len(LETTERS):
            raise QuizError(f"{where}: {len(options)} options; give between 3 and {len(LETTERS)}")
        if len({o.strip() for o in options}) != len(options):
            raise QuizError(f"{where}: two options have the same text")
        banned = [o for o in options if BANNED_OPTION.search(o)]
        if banned:
            raise QuizError(f"{where}: option {banned[0]!r} combines or negates other options; "
                            f"each option must stand for one idea")
    answer_type = entry.get("answer_type", "text")
    if answer_type not in ANSWER_TYPES:
        raise QuizError(f"{where}: answer_type {answer_type!r} must be one of {', '.join(ANSWER_TYPES)}")
    code = _text(entry, "code", where, required=kind == "predict")
    return Question(
        id=qid, lesson=int(lesson), kind=kind, title=_text(entry, "title", where),  # type: ignore[arg-type]
        prompt=_text(entry, "prompt", where), points=points, code=code, options=tuple(options),
        code_options=bool(entry.get("code_options", False)), answer_type=answer_type,  # type: ignore[arg-type]
        placeholder=str(entry.get("placeholder", "")), idea=str(entry.get("idea", "")),
    )


def load_bank(path: Path) -> Bank:
    """Read and validate the bank; any defect is one line naming the question."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QuizError(f"the question bank {path} is missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise QuizError(f"{path} is not valid TOML: {exc}") from None
    entries = data.get("question", [])
    if not isinstance(entries, list) or not entries:
        raise QuizError(f"{path} has no [[question]] entries")
    questions = [parse_question(entry, i, path) for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for question in questions:
        if question.id in seen:
            raise QuizError(f"{path.name}: question id {question.id!r} is used twice")
        seen.add(question.id)
    return Bank(path=path, questions=tuple(questions))
