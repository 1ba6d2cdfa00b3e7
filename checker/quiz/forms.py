"""Exam files: one per student, with that student's variants and order, signed by the instructor.

`course quiz exam --roster roster.csv --out exams/` writes `exams/<student>.exam.toml` for each
student: for every practice question one variant from the exam pool, questions shuffled within
each lesson, options shuffled per question. The draws are an HMAC of the instructor's secret,
the exam's name and the student's id, so re-running the command writes the same files, and
nobody without the secret can predict another student's form.

The file holds questions only (no answer, digest or explanation) and an HMAC-SHA256 signature
over everything else, so a student who swaps in another student's variants, reorders options or
edits the name on it is caught by `course grade`, which checks the signature with the same
secret and grades from the instructor's plain key in the pool.

The student answers it with `course quiz --exam FILE` or `exam(FILE)` in the quiz notebook; both
save to `quiz/exam-answers.toml`, which records the signature of the exam it answers.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import random
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from checker.quiz.answers import is_blank
from checker.quiz.bank import Bank, Question, QuizError, QuizSettings, parse_question
from checker.quiz.pool import Pool
from checker.quiz.safe import MAX_ANSWERS_BYTES, MAX_EXAM_BYTES, parse_toml, read_capped, shown
from checker.quiz.tomlw import dumps_sections, header
from checker.student.progress import write_atomically

FORMAT = 1
CONTEXT = b"advanced-mcp-course exam file v1\n"   # what the signature is over, besides the payload
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
EXAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
ROSTER_COLUMNS = ("id", "student", "login", "username", "github", "email")
SECRET_BYTES = 32

EXAM_HEADER = """\
Your exam for the chapter quiz. Answer it with `uv run course quiz --exam {file}` or, in
lessons/10-quiz.ipynb, with exam("{file}"); your answers are saved to quiz/exam-answers.toml.
Hand in this file and quiz/exam-answers.toml with your work. The file is signed by your
instructor: any change to it (even a space in a question) makes `course grade` reject it."""

EXAM_ANSWERS_HEADER = """\
Your answers to the exam in quiz/exam.toml (written by `course quiz --exam` and the quiz notebook;
you may edit it by hand). [exam] says which exam these answers belong to: keep it as it is.
[answers]: one line per question id, with the letters you were shown, as in the practice quiz."""


# ---------------------------------------------------------------- the instructor's secret and roster

def key_id(secret: bytes) -> str:
    """A short public name for a secret, so a file signed with another secret is reported as such."""
    return hashlib.sha256(b"exam key id\x1f" + secret).hexdigest()[:12]


def load_secret(path: Path) -> bytes:
    """The instructor's exam secret (hex text in a file only the instructor can read)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise QuizError(f"no exam secret at {path}: `uv run course quiz exam` creates one when it writes the exams "
                        f"(grade with the secret the exams were signed with)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QuizError(f"cannot read the exam secret {path}: {exc}") from None
    if not re.fullmatch(r"(?:[0-9a-f]{2}){16,}", text):
        raise QuizError(f"the exam secret {path} must be at least 32 hex digits (16 bytes)")
    return bytes.fromhex(text)


def ensure_secret(path: Path) -> tuple[bytes, bool]:
    """The secret at `path`, created (readable by its owner only) when missing. Returns (secret, created)."""
    if path.exists():
        return load_secret(path), False
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(SECRET_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret.hex() + "\n")
    return secret, True


def read_roster(path: Path) -> list[str]:
    """Student ids from a CSV roster: the column named id, student, login, username, github or email
    (the first of those present), else the first column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise QuizError(f"cannot read the roster {path}: {exc}") from None
    rows = list(csv.reader(io.StringIO(text)))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise QuizError(f"the roster {path} needs a header row and at least one student")
    names = [cell.strip().casefold() for cell in rows[0]]
    column = next((names.index(c) for c in ROSTER_COLUMNS if c in names), 0)
    ids: list[str] = []
    seen: set[str] = set()
    for number, row in enumerate(rows[1:], start=2):
        student = row[column].strip() if column < len(row) else ""
        if not STUDENT_ID.match(student):
            raise QuizError(f"{path.name} line {number}: {shown(student)!r} is not a usable student id (letters, "
                            f"digits and . _ @ + -, as the submission folders are named)")
        if student.casefold() in seen:
            raise QuizError(f"{path.name} line {number}: {student!r} appears twice")
        seen.add(student.casefold())
        ids.append(student)
    return ids


def issued_to(exam_student: str, submission: str) -> bool:
    """Whether a submission named `submission` belongs to the student an exam was issued to: the same id,
    or `<assignment>-<id>` as GitHub Classroom names its repositories."""
    student, submission = exam_student.casefold(), submission.casefold()
    return submission == student or submission.endswith("-" + student)


# ---------------------------------------------------------------- drawing and signing a form

def _draw(secret: bytes, *parts: str) -> int:
    message = "\x1f".join(("draw", *parts)).encode("utf-8")
    return int.from_bytes(hmac.new(secret, message, hashlib.sha256).digest()[:8], "big")


def _payload_bytes(data: dict[str, object]) -> bytes:
    """What the signature covers: the whole file but the signature, as canonical JSON."""
    exam = {k: v for k, v in dict(data.get("exam", {})).items() if k != "signature"}  # type: ignore[call-overload]
    return CONTEXT + json.dumps({**data, "exam": exam}, sort_keys=True, ensure_ascii=False,
                                separators=(",", ":")).encode("utf-8")


def sign(data: dict[str, object], secret: bytes) -> str:
    return hmac.new(secret, _payload_bytes(data), hashlib.sha256).hexdigest()


def _question_table(question: Question, order: list[int]) -> dict[str, object]:
    table: dict[str, object] = {"id": question.id, "lesson": question.lesson, "kind": question.kind,
                                "title": question.title, "prompt": question.prompt, "points": question.points}
    if question.code:
        table["code"] = question.code
    if question.options:
        table["options"] = [question.options[i] for i in order]
        table["order"] = order
        if question.code_options:
            table["code_options"] = True
    else:
        table["answer_type"] = question.answer_type
        if question.placeholder:
            table["placeholder"] = question.placeholder
    return table


def build_exam(course_title: str, bank: Bank, pool: Pool, secret: bytes, name: str, student: str) -> dict[str, object]:
    """One student's signed exam: a variant of every idea the pool covers, shuffled within each lesson."""
    if not EXAM_NAME.match(name):
        raise QuizError(f"exam name {name!r}: use letters, digits, . _ - (at most 60)")
    if not STUDENT_ID.match(student):
        raise QuizError(f"{student!r} is not a usable student id")
    who = student.casefold()
    chosen: list[Question] = []
    covered = pool.ideas(bank)
    if not covered:
        raise QuizError(f"{pool.path.name} has no variants to draw an exam from")
    for lesson in sorted({q.lesson for q in covered}):
        ideas = sorted(
            (q for q in covered if q.lesson == lesson), key=lambda q: _draw(secret, name, who, "position", q.id)
        )
        for idea in ideas:
            variants = pool.of(idea.id)
            chosen.append(variants[_draw(secret, name, who, "variant", idea.id) % len(variants)])
    tables = []
    for question in chosen:
        order = list(range(len(question.options)))
        random.Random(_draw(secret, name, who, "options", question.id)).shuffle(order)
        tables.append(_question_table(question, order))
    data: dict[str, object] = {
        "exam": {"format": FORMAT, "course": course_title, "name": name, "student": student,
                 "questions": len(chosen), "points": sum(q.points for q in chosen), "key_id": key_id(secret)},
        "question": tables,
    }
    data["exam"]["signature"] = sign(data, secret)  # type: ignore[index]
    return data


def exam_text(data: dict[str, object], file_hint: str) -> str:
    return header(EXAM_HEADER.format(file=file_hint)) + tomli_w.dumps(data, multiline_strings=True)


# ---------------------------------------------------------------- reading a form (both sides)

@dataclass(frozen=True)
class ExamItem:
    question: Question                  # options in the pool's (canonical) order
    order: tuple[int, ...] = ()         # canonical index of each option as this student sees it


@dataclass(frozen=True)
class Exam:
    data: dict[str, object]             # the file as parsed: what the signature covers
    name: str
    student: str
    signature: str
    key_id: str
    items: tuple[ExamItem, ...]

    @property
    def points(self) -> int:
        return sum(item.question.points for item in self.items)

    def item(self, qid: str) -> ExamItem | None:
        return next((item for item in self.items if item.question.id == qid), None)


def _item(entry: object, index: int, where: Path) -> ExamItem:
    if not isinstance(entry, dict):
        raise QuizError(f"{where.name}: question #{index + 1} is not a table")
    fields = dict(entry)
    order = fields.pop("order", [])
    shown_options = fields.get("options", [])
    if shown_options:
        if (not isinstance(order, list) or not isinstance(shown_options, list)
                or sorted(o if isinstance(o, int) and not isinstance(o, bool) else -1 for o in order)
                != list(range(len(shown_options)))):
            raise QuizError(f"{where.name}: question #{index + 1} has an option order that does not match its options")
        canonical: list[object] = [None] * len(shown_options)
        for position, original in enumerate(order):
            canonical[original] = shown_options[position]
        fields["options"] = canonical
    question = parse_question(fields, index, where)
    return ExamItem(question, tuple(order) if question.options else ())


def parse_exam(data: dict[str, object], where: Path) -> Exam:
    """An exam from its parsed file, every field checked (a student may have edited it)."""
    meta = data.get("exam")
    questions = data.get("question")
    if not isinstance(meta, dict) or not isinstance(questions, list) or not questions:
        raise QuizError(f"{where.name} is not an exam file: it needs an [exam] table and [[question]] tables")
    if meta.get("format") != FORMAT:
        raise QuizError(
            f"{where.name}: exam format {shown(meta.get('format'))} is not {FORMAT}; ask for a new exam file"
        )
    name, student = meta.get("name"), meta.get("student")
    signature, kid = meta.get("signature"), meta.get("key_id", "")
    if not (isinstance(name, str) and EXAM_NAME.match(name) and isinstance(student, str) and STUDENT_ID.match(student)):
        raise QuizError(f"{where.name}: the exam's name or student is missing or malformed")
    if not (isinstance(signature, str) and HEX64.match(signature)) or not isinstance(kid, str):
        raise QuizError(f"{where.name} carries no valid signature")
    items = tuple(_item(entry, i, where) for i, entry in enumerate(questions))
    if len({item.question.id for item in items}) != len(items):
        raise QuizError(f"{where.name}: a question id appears twice")
    return Exam(data=data, name=name, student=student, signature=signature, key_id=kid, items=items)


def read_exam(path: Path) -> Exam:
    """An exam file, checked for shape (a student's machine cannot check the signature)."""
    text = read_capped(path, MAX_EXAM_BYTES, "the exam file")
    if text is None:
        raise QuizError(f"no exam file at {path}")
    return parse_exam(parse_toml(text, f"the exam file {path.name}"), path)


def verify(exam: Exam, secret: bytes) -> str:
    """Why the exam's signature does not hold ("" when it does)."""
    if exam.key_id != key_id(secret):
        return (f"the exam file was not signed with this course's exam secret (key id {shown(exam.key_id, 16)}, "
                f"expected {key_id(secret)})")
    if not hmac.compare_digest(sign(exam.data, secret), exam.signature):
        return "the exam file was changed after it was issued: its signature does not match its contents"
    return ""


def pool_drift(exam: Exam, pool: Pool) -> str:
    """Why a correctly signed exam no longer matches the pool ("" when it does): the instructor changed
    the pool after issuing it, which is the grader's problem, never the student's."""
    for item in exam.items:
        current = pool.get(item.question.id)
        if current is None:
            return f"question {item.question.id} of this exam is no longer in {pool.path.name}"
        same = (current.options, current.prompt, current.code, current.kind, current.points) == (
            item.question.options, item.question.prompt, item.question.code, item.question.kind, item.question.points)
        if not same:
            return f"question {item.question.id} changed in {pool.path.name} after this exam was issued"
    return ""


# ---------------------------------------------------------------- the student's exam answers

@dataclass
class ExamSheet:
    path: Path
    signature: str | None               # the signature of the exam these answers belong to
    answers: dict[str, object]
    exists: bool = False

    def answered(self, qid: str) -> bool:
        return not is_blank(self.answers.get(qid))


def load_exam_sheet(path: Path) -> ExamSheet:
    text = read_capped(path, MAX_ANSWERS_BYTES, "your exam answers file")
    if text is None:
        return ExamSheet(path, None, {})
    data = parse_toml(text, f"your exam answers file {path.name}")
    meta, answers = data.get("exam", {}), data.get("answers", {})
    if not isinstance(meta, dict) or not isinstance(answers, dict):
        raise QuizError(f"your exam answers file {path.name} must have an [exam] table and an [answers] table")
    signature = meta.get("signature")
    if signature is not None and not isinstance(signature, str):
        raise QuizError(f"your exam answers file {path.name}: [exam] signature must be a string")
    return ExamSheet(path, signature, dict(answers), exists=True)


def save_exam_answer(exam: Exam, path: Path, qid: str, value: object | None) -> ExamSheet:
    """Record one exam answer (None removes it), keeping the others; refuses a file for another exam."""
    sheet = load_exam_sheet(path)
    if sheet.exists and sheet.signature not in (None, exam.signature):
        raise QuizError(f"{path.name} holds answers to a different exam; move it away before answering this one")
    if value is None:
        sheet.answers.pop(qid, None)
    else:
        sheet.answers[qid] = value
    order = [item.question.id for item in exam.items]
    answers = {
        k: sheet.answers[k]
        for k in sorted(sheet.answers, key=lambda k: order.index(k) if k in order else len(order))
        if isinstance(sheet.answers[k], (str, int, list))
    }
    meta = {"name": exam.name, "student": exam.student, "signature": exam.signature}
    write_atomically(path, header(EXAM_ANSWERS_HEADER) + dumps_sections({"exam": meta, "answers": answers}))
    sheet.signature, sheet.exists = exam.signature, True
    return sheet


# ---------------------------------------------------------------- where things are

def install_exam(settings: QuizSettings, source: Path) -> tuple[Exam, Path]:
    """Read the exam a student was given and keep a copy at course.toml's `exam_file` (quiz/exam.toml),
    which they hand in. A different exam already there is never overwritten."""
    exam = read_exam(source)
    target = settings.exam_file
    if source.resolve() != target.resolve():
        existing = read_capped(target, MAX_EXAM_BYTES, "the exam file")
        if existing is None:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, source.read_text(encoding="utf-8"))
        elif existing != source.read_text(encoding="utf-8"):
            raise QuizError(f"{target.relative_to(settings.course.root)} already holds another exam; move it away "
                            f"first if {source.name} is the one you were given")
    return exam, target
