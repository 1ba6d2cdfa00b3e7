"""The key-recovery attack on the practice quiz, run against a real student edition: it recovers the
practice answers (the practice quiz is an oracle by nature), and nothing it recovers scores on an exam.

The attack uses only what `course release` ships: quiz/bank.toml and quiz/key.hashed.toml. Each
choice option is stored as sha256(salt|id|option:<letter>:<1 right, 0 wrong>), so hashing every
option as "right" names the right ones; short answers fall to guesses (numbers, and every word of
the bank), hashed the same way.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from checker.quiz.grading import grade_submission_quiz
from tests.conftest import COURSE
from tests.coursecopy import COURSE_SCRIPT, course_env
from tests.exam_helpers import BANK, POOL, PRACTICE_KEY, QUIZ, SETUP, TOTAL, answers_text, as_exam, exam_file, form, submission


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release") / "student-edition"
    proc = subprocess.run([COURSE_SCRIPT, "release", str(out)], cwd=COURSE.root, capture_output=True, text=True,
                          timeout=300, env=course_env(COURSE.root))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def recover_practice_answers(edition: Path) -> dict[str, object]:
    """The attack: right letters (bank order) or short answers, from the student edition alone."""
    bank = tomllib.loads((edition / "quiz" / "bank.toml").read_text())["question"]
    key = tomllib.loads((edition / "quiz" / "key.hashed.toml").read_text())["questions"]
    digest = lambda salt, qid, value: hashlib.sha256("\x1f".join((salt, qid, value)).encode()).hexdigest()  # noqa: E731
    words = {w.casefold() for q in bank for w in re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", " ".join(
        [q["prompt"], q.get("code", ""), *q.get("options", [])]))}
    guesses = [str(n) for n in range(-33000, 1000)] + sorted(words)
    found: dict[str, object] = {}
    for q in bank:
        entry = key[q["id"]]
        if q.get("options"):
            letters = [letter for index, letter in enumerate("ABCDEFGH"[: len(q["options"])])
                       if digest(entry["salt"], q["id"], f"option:{letter}:1") == entry["options"][index]]
            found[q["id"]] = letters if q["kind"] == "multi" else letters[0]
        else:
            hit = next((g for g in guesses if digest(entry["salt"], q["id"], f"answer:{g}") in entry["accepted"]), None)
            if hit is not None:
                found[q["id"]] = hit
    return found


def test_the_attack_recovers_the_practice_key_from_a_release(release: Path) -> None:
    found = recover_practice_answers(release)
    choice = [q for q in BANK if q.is_choice]
    assert all(q.id in found for q in choice), "the attack must really work, or this test proves nothing"
    assert len(found) >= 49, f"recovered only {len(found)} of {len(BANK)}"
    for qid, value in found.items():
        expected = list(PRACTICE_KEY[qid].correct)
        assert (value if isinstance(value, list) else [value]) == expected or value in expected, qid


def test_the_release_holds_no_exam_pool(release: Path) -> None:
    assert not (release / "quiz" / "exam").exists(), "the exam pool must stay in the instructor edition"
    texts = "\n".join(p.read_text(errors="replace") for p in release.rglob("*") if p.is_file() and p.suffix in
                      (".toml", ".py", ".md", ".ipynb", ".txt", ".json", ".yml"))
    for variant in POOL.variants:
        pieces = [variant.prompt, variant.code, *variant.options]
        assert not all(piece in texts for piece in pieces), f"{variant.id} is in the student edition"
        for why in POOL.key[variant.id].why.values():
            assert why[:50] not in texts, f"{variant.id}: an explanation is in the student edition"


def test_nothing_recovered_scores_on_an_exam(release: Path, tmp_path: Path) -> None:
    found = recover_practice_answers(release)
    known_right_texts = {" ".join(q.options[q.letters.index(letter)].split()).casefold()
                         for q in BANK if q.id in found and q.is_choice
                         for letter in (found[q.id] if isinstance(found[q.id], list) else [found[q.id]])}
    ada = as_exam(form("ada"))
    # 1. the recovered answers as they are, keyed by practice id
    verbatim = answers_text(ada, {qid: value for qid, value in found.items()})
    result = grade_submission_quiz(COURSE, QUIZ, submission(tmp_path / "a", exam_file(form("ada")), verbatim),
                                   student="ada", exam=SETUP)
    assert result.earned == 0 and result.available == TOTAL
    # 2. carried over by meaning: every exam option whose text is a recovered right answer, and the
    #    recovered short answer of the practice question each variant's id starts with
    carried: dict[str, object] = {}
    for item in ada.items:
        q = item.question
        if q.is_choice:
            picks = [q.letters[position] for position, canonical in enumerate(item.order)
                     if " ".join(q.options[canonical].split()).casefold() in known_right_texts]
            if picks:
                carried[q.id] = picks if q.is_multi else picks[0]
        else:
            idea = max((qid for qid in found if q.id.startswith(qid)), key=len, default=None)
            if idea is not None and not isinstance(found[idea], list):
                carried[q.id] = found[idea]
    result = grade_submission_quiz(COURSE, QUIZ, submission(tmp_path / "b", exam_file(form("ada")),
                                                            answers_text(ada, carried)), student="ada", exam=SETUP)
    assert result.available == TOTAL and result.earned == 0, (
        f"recovered practice answers earned {result.earned} exam points: "
        f"{[c.id for c in result.checks if c.earned]}")


def test_practice_forged_answers_earn_no_exam_points(release: Path, tmp_path: Path) -> None:
    """The forged practice file is a perfect practice score, and worth nothing when the exam counts."""
    found = recover_practice_answers(release)
    lines = "\n".join(f"{qid} = {value!r}".replace("'", '"') for qid, value in found.items())
    root = submission(tmp_path, exam_file(form("ada")))
    (root / "quiz" / "answers.toml").write_text(f'[quiz]\nseed = ""\n\n[answers]\n{lines}\n')
    practice = grade_submission_quiz(COURSE, QUIZ, root, student="ada", exam=None)
    assert practice.earned >= 0.85 * BANK.points, "the forgery should pass the practice quiz (its key is public)"
    exam = grade_submission_quiz(COURSE, QUIZ, root, student="ada", exam=SETUP)
    assert exam.earned == 0 and exam.available == TOTAL
