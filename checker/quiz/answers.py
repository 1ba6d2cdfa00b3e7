"""The student's answers file, the per-student option order, and reading one answer.

The file belongs to the student (`quiz/answers.toml` by default). It is plain TOML so it can be
read, diffed, submitted and edited by hand:

    [quiz]
    seed = "5e1f0c2a9b3d"        # the option order you were shown; keep it with your answers

    [answers]
    l1-some-question = "C"                # single choice / predict the output: one letter
    l3-other-question = ["A", "D"]        # select all that apply: a list (or "A, D")
    l5-short-question = "404"             # short answer: as you would type it

Letters are the ones *you* saw: options are shuffled per student with a stable seed, derived
from $COURSE_STUDENT (course.toml `seed_env`), else your git `user.email`, else `user.name`,
else your login name; only a short hash of it is stored. The seed is written into the file the
first time an answer is saved, and from then on the file's seed wins, so your letters keep their
meaning even on another machine. `seed = ""` shows the bank's own order.

Every save re-reads the file, changes one answer and replaces the file atomically (a temporary
file renamed into place), so answers saved from the notebook and the terminal never overwrite
each other and an interrupted save leaves the old file intact. A file that is not valid TOML is
never overwritten: the save stops with a one-line message instead.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import random
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from checker.quiz.bank import Question, QuizError, QuizSettings
from checker.quiz.keys import InvalidAnswer, normalise
from checker.quiz.safe import MAX_ANSWERS_BYTES, parse_toml, read_capped, shown
from checker.quiz.tomlw import dumps_sections, header
from checker.student.progress import write_atomically

Raw = str | int | list[str]

ANSWERS_HEADER = """\
Your answers to the chapter quiz (lesson 10). This file is yours: `uv run course quiz` and the quiz
notebook (lessons/10-quiz.ipynb) save to it, and you may edit it by hand.

[quiz] seed: the order your options were shown in. Keep it: your letters refer to that order.
[answers]: one line per question id, with the letters you saw:
  single choice and predict-the-output:  l1-some-question = "C"
  select all that apply:                  l3-other-question = ["A", "D"]   (or "A, D")
  short answer:                           l5-short-question = "404"   (numbers, codes and names
                                          are normalised: case, quotes and spacing do not matter)
Leave a question out to skip it. `uv run course check lesson-10` grades this file."""


# ---------------------------------------------------------------- the seed and the option order

def _git(name: str, cwd: Path) -> str:
    try:
        proc = subprocess.run(["git", "config", "--get", name], cwd=cwd, capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def student_identity(settings: QuizSettings) -> str:
    """Who is taking the quiz: $COURSE_STUDENT, else git user.email / user.name, else the login."""
    found = os.environ.get(settings.seed_env, "").strip()
    if not found:
        root = settings.course.root
        found = _git("user.email", root) or _git("user.name", root)
    if not found:
        try:
            found = getpass.getuser()
        except (OSError, KeyError):
            found = "student"
    return found


def derive_seed(identity: str) -> str:
    """A short, stable, non-identifying seed for one student."""
    return hashlib.sha256(f"advanced-mcp-quiz:{identity.strip().casefold()}".encode()).hexdigest()[:12]


def option_order(seed: str, qid: str, count: int) -> list[int]:
    """Canonical option indices in the order this student sees them (identity for seed "")."""
    order = list(range(count))
    if seed:
        rng = random.Random(int.from_bytes(hashlib.sha256(f"{seed}:{qid}".encode()).digest()[:8], "big"))
        rng.shuffle(order)
    return order


# ---------------------------------------------------------------- the file

@dataclass
class AnswerSheet:
    path: Path
    seed: str | None                     # None: not chosen yet (no file, or a file without one)
    answers: dict[str, object] = field(default_factory=dict)
    exists: bool = False

    def effective_seed(self, settings: QuizSettings) -> str:
        return self.seed if self.seed is not None else derive_seed(student_identity(settings))

    def answered(self, qid: str) -> bool:
        return not is_blank(self.answers.get(qid))


def is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value)


def load_sheet(path: Path) -> AnswerSheet:
    """Read an answers file. Missing: an empty sheet. Broken: a one-line QuizError."""
    text = read_capped(path, MAX_ANSWERS_BYTES, "your answers file")
    if text is None:
        return AnswerSheet(path, seed=None)
    data = parse_toml(text, f"your answers file {path}", "; fix that line by hand (see the comment at its top) "
                      "— nothing was changed")
    quiz = data.get("quiz", {})
    answers = data.get("answers", {})
    if not isinstance(quiz, dict) or not isinstance(answers, dict):
        raise QuizError(f"your answers file {path} must have a [quiz] table and an [answers] table "
                        f"(see the comment at its top)")
    seed = quiz.get("seed")
    if seed is not None and not isinstance(seed, str):
        raise QuizError(f"your answers file {path}: [quiz] seed must be a string in quotes, not {shown(seed)}")
    return AnswerSheet(path, seed=seed, answers=dict(answers), exists=True)


def render_sheet(sheet: AnswerSheet, order: list[str], seed: str) -> str:
    """The file's text: header comment, the seed, answers in bank order (unknown ids kept at the end)."""
    known = [qid for qid in order if qid in sheet.answers]
    rest = [qid for qid in sheet.answers if qid not in set(order)]
    answers = {qid: sheet.answers[qid] for qid in known + rest if not is_blank(sheet.answers[qid])}
    serialisable = {k: v for k, v in answers.items() if isinstance(v, (str, int, float, bool, list))}
    return header(ANSWERS_HEADER) + dumps_sections({"quiz": {"seed": seed}, "answers": serialisable})


def save_answer(settings: QuizSettings, path: Path, qid: str, value: Raw | None, order: list[str]) -> AnswerSheet:
    """Record one answer (None or blank removes it), keeping every other answer in the file."""
    sheet = load_sheet(path)            # re-read: another tab may have saved since we last looked
    seed = sheet.effective_seed(settings)
    if value is None or is_blank(value):
        sheet.answers.pop(qid, None)
    else:
        sheet.answers[qid] = value
    write_atomically(path, render_sheet(sheet, order, seed))
    sheet.seed, sheet.exists = seed, True
    return sheet


# ---------------------------------------------------------------- reading one answer

class BadAnswer(ValueError):
    """An answer that cannot be graded; the message names what is wrong, for one line."""


def letters_of(value: object, question: Question) -> list[str]:
    """The displayed letters in a choice answer: "b", "B)", "A, C", "A C", "AC" or ["A", "C"]."""
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise BadAnswer("write the letters as strings, such as [\"A\", \"C\"]")
        text = " ".join(value)
    elif isinstance(value, str):
        text = value
    else:
        raise BadAnswer(f"{shown(value)} is not a letter; write it in quotes, such as \"B\"")
    cleaned = re.sub(r"[\s,;/+&()\[\].\"'`]|\band\b", " ", text, flags=re.I)
    tokens = cleaned.split()
    if any(len(t) > 1 and not all(ch.upper() in question.letters for ch in t) for t in tokens):
        raise BadAnswer(f"{shown(text)!r} is not a choice; answer with the letter(s) of the options, "
                        f"{question.letters[0]}–{question.letters[-1]}")
    picked = list(dict.fromkeys(ch.upper() for t in tokens for ch in t))
    outside = [p for p in picked if p not in question.letters]
    if outside:
        raise BadAnswer(f"{outside[0]!r} is not one of the options {question.letters[0]}–{question.letters[-1]}")
    if not question.is_multi and len(picked) > 1:
        raise BadAnswer(f"this question has one answer; pick one letter, not {', '.join(picked)}")
    return picked


def canonical_letters(value: object, question: Question, order: list[int]) -> list[str]:
    """The student's displayed letters mapped back to the bank's letters (`order`: see option_order)."""
    return sorted(question.letters[order[question.letters.index(letter)]] for letter in letters_of(value, question))


def short_answer(value: object, question: Question) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadAnswer(f"{shown(value)} is not a short answer; write it in quotes, such as \"421\"")
    try:
        return normalise(value, question.answer_type)
    except InvalidAnswer as exc:
        raise BadAnswer(f"{shown(value)!r}: this question {exc}") from None


def check_response(value: object, question: Question) -> Raw:
    """Validate what a student typed and return what to store (raises BadAnswer)."""
    if question.is_choice:
        picked = letters_of(value, question)
        if not picked:
            raise BadAnswer("no letter given")
        return picked if question.is_multi else picked[0]
    short_answer(value, question)
    return value if isinstance(value, int) else str(value).strip()
