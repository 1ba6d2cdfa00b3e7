"""Exam mode: the pool is right and answers nothing the practice key gives away, every student's exam
file is their own and signed, and `grade_submission_quiz` grades it from the instructor's key and
survives anything a student hands in (these hostile files are part of the grader's attack corpus).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from checker.quiz.forms import issued_to, read_exam, read_roster, verify
from checker.quiz.grading import grade_submission_quiz
from checker.quiz.keys import normalise
from checker.quiz.pool import practice_leaks
from checker.runner.catalog import lesson_points
from checker.runner.results import LessonResult
from tests.conftest import COURSE
from tests.exam_helpers import (BANK, POOL, PRACTICE_KEY, QUIZ, SETUP, TOTAL, answers_text, as_exam, exam_file, form,
                                right_answers, submission)
from tests.quiz_helpers import output_lines, run_snippet

PREDICT = [q for q in POOL.variants if q.kind == "predict"]
VERIFIED = [q for q in POOL.variants if POOL.key[q.id].verify]


def grade(root: Path, student: str = "ada", exam=SETUP) -> LessonResult:  # noqa: ANN001
    return grade_submission_quiz(COURSE, QUIZ, root, student=student, exam=exam)


# ---------------------------------------------------------------- the pool

def test_pool_has_two_variants_per_idea_and_leaks_nothing_from_practice() -> None:
    ideas = POOL.ideas(BANK)
    assert [q.id for q in ideas] == [q.id for q in BANK], "every practice question needs exam variants"
    assert TOTAL == BANK.points == lesson_points(COURSE, QUIZ), "an exam is worth what the practice quiz is"
    thin = [idea.id for idea in ideas if len(POOL.of(idea.id)) < 2]
    assert not thin, f"ideas with one variant give every student the same question: {thin}"
    leaks = practice_leaks(BANK, PRACTICE_KEY, POOL)
    assert not leaks, "variants whose right answer the practice key gives away: " + "; ".join(leaks[:5])
    seen = [(v.prompt, v.code) for v in POOL.variants]
    assert len(set(seen)) == len(seen), "two variants ask the same thing (and text2qti refuses duplicate questions)"
    for variant in POOL.variants:
        for text in POOL.key[variant.id].why.values():
            assert "\n" not in text and 25 <= len(text) <= 320, f"{variant.id}: explanations are one line: {text!r}"


@pytest.mark.parametrize("question", PREDICT, ids=[q.id for q in PREDICT])
def test_predict_variant_key_matches_what_the_sdk_does(question) -> None:
    got = output_lines(run_snippet(question.code, question.id))
    key = POOL.key[question.id]
    if question.is_choice:
        matching = [question.letters[i] for i, option in enumerate(question.options) if output_lines(option) == got]
        assert matching == list(key.correct), f"{question.id}: the snippet printed {got}, the key says {key.correct}"
    else:
        assert normalise("\n".join(got), question.answer_type) in key.correct, f"{question.id}: printed {got}"


@pytest.mark.parametrize("question", VERIFIED, ids=[q.id for q in VERIFIED])
def test_fact_behind_a_variant_holds_on_the_installed_sdk(question) -> None:
    run_snippet(POOL.key[question.id].verify, question.id)


# ---------------------------------------------------------------- exam files

def test_two_students_get_different_variants_and_orders_each_signed() -> None:
    ada, bob = as_exam(form("ada")), as_exam(form("bob"))
    assert form("ada") == form("ada"), "the same secret, name and student must draw the same exam"
    ideas = lambda exam: {item.question.idea or POOL.get(item.question.id).idea: item.question.id for item in exam.items}  # noqa: E731
    assert set(ideas(ada)) == set(ideas(bob)) == {q.id for q in POOL.ideas(BANK)}, "one variant of every idea"
    assert ideas(ada) != ideas(bob), "two students must not get the same variants"
    same = [qid for qid in ideas(ada).values() if qid in ideas(bob).values()]
    assert any(ada.item(q).order != bob.item(q).order for q in same if ada.item(q).order), "nor the same option order"
    assert [i.question.id for i in ada.items] != [i.question.id for i in bob.items]
    assert not verify(ada, SETUP.secret) and not verify(bob, SETUP.secret)
    assert as_exam(form("ada", name="final")).items != ada.items, "a new exam name draws anew"


def test_exam_file_holds_questions_only() -> None:
    text = exam_file(form("ada"))
    exam = as_exam(form("ada"))
    assert len(re.findall(r"\b[0-9a-f]{64}\b", text)) == 1, "the signature is the only digest in an exam file"
    for field in ("answer", "why", "wrong", "verify", "salt", "accepted", "idea"):
        assert not re.search(rf"(?m)^{field}\s*=", text), f"an exam file must not carry {field!r}"
    for item in exam.items:
        key = POOL.key[item.question.id]
        for explanation in (*key.why.values(), *key.wrong.values()):
            assert explanation[:40] not in text, f"{item.question.id}: an explanation is in the exam file"


def test_each_student_scores_full_marks_on_their_own_exam_only(tmp_path: Path) -> None:
    ada, bob = as_exam(form("ada")), as_exam(form("bob"))
    own = grade(submission(tmp_path / "ada", exam_file(form("ada")), answers_text(ada, right_answers(ada))))
    assert not own.error and own.earned == own.available == TOTAL, [c.message for c in own.checks if not c.passed][:3]
    assert own.ok
    assert [c.id for c in own.checks] == [q.id for q in POOL.ideas(BANK)], "one check per idea, in the bank's order"
    # bob hands in ada's right answers with his own exam
    copied = grade(submission(tmp_path / "bob", exam_file(form("bob")), answers_text(bob, right_answers(ada))), "bob")
    assert copied.available == TOTAL and copied.earned < 0.5 * TOTAL, f"shared answers earned {copied.earned}/{TOTAL}"


def test_github_classroom_folder_names_match_the_roster_id() -> None:
    assert issued_to("ada", "ada") and issued_to("Ada", "quiz-ada") and not issued_to("ada", "quiz-adam")
    assert not issued_to("ada", "bada") and not issued_to("ada", "ada-quiz")


@pytest.mark.parametrize("tamper", ["option text", "swapped variant", "renamed student", "reordered options",
                                    "added points", "forged signature"])
def test_a_tampered_exam_file_is_rejected_with_a_reason(tmp_path: Path, tamper: str) -> None:
    data = form("ada")
    questions = data["question"]
    choice = next(q for q in questions if "options" in q)
    if tamper == "option text":
        choice["options"][0] += " "
    elif tamper == "swapped variant":  # another student's variant of the same idea, as it appears on their file
        ada_ids = {q["id"] for q in questions}
        other = next(q for student in ("bob", "cy", "dee", "eve") for q in form(student)["question"] if q["id"] not in ada_ids)
        index = next(i for i, q in enumerate(questions) if POOL.get(q["id"]).idea == POOL.get(other["id"]).idea)
        questions[index] = other
    elif tamper == "renamed student":
        data["exam"]["student"] = "bob"
    elif tamper == "reordered options":
        choice["options"] = choice["options"][::-1]
        choice["order"] = choice["order"][::-1]
    elif tamper == "added points":
        data["exam"]["points"] += 10
    else:
        data["exam"]["signature"] = "0" * 64
    exam = as_exam(data)
    root = submission(tmp_path, exam_file(data), answers_text(exam, right_answers(exam)))
    result = grade(root, "bob" if tamper == "renamed student" else "ada")
    assert result.earned == 0 and result.available == TOTAL and not result.error
    assert "signature does not match" in result.checks[0].message, result.checks[0].message


def test_another_students_valid_exam_and_a_foreign_secret_are_rejected(tmp_path: Path) -> None:
    bob = as_exam(form("bob"))
    result = grade(submission(tmp_path / "a", exam_file(form("bob")), answers_text(bob, right_answers(bob))), "ada")
    assert result.earned == 0 and "issued to bob, not to ada" in result.checks[0].message
    foreign = form("ada", secret=b"\x01" * 32)
    result = grade(submission(tmp_path / "b", exam_file(foreign), answers_text(as_exam(foreign), right_answers(as_exam(foreign)))))
    assert result.earned == 0 and "not signed with this course's exam secret" in result.checks[0].message


def test_answers_for_another_exam_or_no_exam_score_zero(tmp_path: Path) -> None:
    ada = as_exam(form("ada"))
    result = grade(submission(tmp_path / "a", exam_file(form("ada")), answers_text(ada, right_answers(ada), "f" * 64)))
    assert result.earned == 0 and result.available == TOTAL and "different exam file" in result.checks[0].message
    result = grade(submission(tmp_path / "b", None, answers_text(ada, right_answers(ada))))
    assert result.earned == 0 and result.available == TOTAL and "no exam file" in result.checks[0].message
    result = grade(submission(tmp_path / "c", exam_file(form("ada"))))
    assert result.earned == 0 and result.available == TOTAL, "no answers: every question unanswered"


def test_the_answers_files_own_seed_changes_nothing_in_an_exam(tmp_path: Path) -> None:
    """The practice quiz trusts the seed in the answers file; an exam's order is the signed one."""
    ada = as_exam(form("ada"))
    bank_order = {}
    for item in ada.items:
        key = POOL.key[item.question.id]
        bank_order[item.question.id] = (list(key.correct) if item.question.is_multi else key.correct[0]) \
            if item.question.is_choice else key.shown
    text = answers_text(ada, bank_order).replace("[answers]", '[quiz]\nseed = ""\n\n[answers]')
    result = grade(submission(tmp_path, exam_file(form("ada")), text))
    from checker.quiz.grading import grade_in_order

    as_signed = sum(grade_in_order(POOL.get(item.question.id), POOL.key[item.question.id],
                                   bank_order[item.question.id], list(item.order)).points for item in ada.items)
    assert result.earned == pytest.approx(as_signed) and as_signed < TOTAL, "the letters mean the signed order, always"


# ---------------------------------------------------------------- hostile files: never raise, 0 of the real total

HOSTILE_ANSWERS = {
    "malformed TOML": "[exam\nsignature = 'x'\n",
    "5,000-digit integer": "[answers]\nx = " + "9" * 5000 + "\n",
    "deeply nested arrays": "[answers]\nx = " + "[" * 20000 + "]" * 20000 + "\n",
    "huge file": "# " + "x" * 200_000 + "\n",
    "not UTF-8": b"\xff\xfe[answers]\n",
    "exam is a string": 'exam = "yes"\nanswers = "no"\n',
    "signature is a number": "[exam]\nsignature = 5\n[answers]\n",
    "seed = 5": "[quiz]\nseed = 5\n[exam]\nsignature = 5\n",
}
BAD_VALUES = ['{ letter = "A" }', "3.5", "true", '[["A"]]', "[1, 2]", '"' + "9" * 5000 + '"', '"' + "A" * 60000 + '"',
              "1979-05-27T07:32:00Z", "-" + "9" * 4000]


@pytest.mark.parametrize("name", sorted(HOSTILE_ANSWERS))
def test_hostile_exam_answers_file_scores_zero_with_the_reason(tmp_path: Path, name: str) -> None:
    content = HOSTILE_ANSWERS[name]
    root = submission(tmp_path, exam_file(form("ada")))
    target = root / "quiz" / "exam-answers.toml"
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = grade(root)
    assert not result.error and result.earned == 0 and result.available == TOTAL, (name, result.error, result.checks[:1])
    assert result.checks[0].id == "answers-file" and result.checks[0].message, name


@pytest.mark.parametrize("name", sorted(HOSTILE_ANSWERS))
def test_hostile_practice_answers_file_scores_zero_with_the_reason(tmp_path: Path, name: str) -> None:
    content = HOSTILE_ANSWERS[name]
    (tmp_path / "quiz").mkdir()
    (tmp_path / "quiz" / "answers.toml").write_bytes(content if isinstance(content, bytes) else content.encode())
    result = grade(tmp_path, exam=None)
    if name == "exam is a string":       # (no [quiz] table and a string [answers]: the shape is wrong)
        assert "must have a [quiz] table" in result.checks[0].message
    assert not result.error and result.earned == 0 and result.available == BANK.points, (name, result.checks[:1])


@pytest.mark.parametrize("value", BAD_VALUES)
def test_every_answer_of_a_wrong_type_is_that_questions_zero(tmp_path: Path, value: str) -> None:
    ada = as_exam(form("ada"))
    lines = "\n".join(f"{item.question.id} = {value}" for item in ada.items)
    text = answers_text(ada, {}) + lines + "\n"
    result = grade(submission(tmp_path, exam_file(form("ada")), text))
    assert not result.error and result.available == TOTAL and result.earned == 0, value
    if len(text) < 64 * 1024:
        assert all(c.message and len(c.message) < 400 for c in result.checks), "every question says why, in one line"


@pytest.mark.parametrize("name", ["huge", "deep", "digits", "symlink", "fifo", "folder", "garbage"])
def test_hostile_exam_file_is_rejected_not_raised(tmp_path: Path, name: str) -> None:
    root = submission(tmp_path, None, "")
    target = root / "quiz" / "exam.toml"
    if name == "huge":
        target.write_text(exam_file(form("ada")) + "#" * (1024 * 1024))
    elif name == "deep":
        target.write_text("x = " + "[" * 100_000 + "]" * 100_000)
    elif name == "digits":
        target.write_text(exam_file(form("ada")).replace("points = 1\n", "points = " + "1" * 5000 + "\n", 1))
    elif name == "symlink":
        target.symlink_to("/etc/passwd")
    elif name == "fifo":
        os.mkfifo(target)
    elif name == "folder":
        target.mkdir()
    else:
        target.write_bytes(os.urandom(4096))
    result = grade(root)
    assert not result.error and result.earned == 0 and result.available == TOTAL, (name, result.checks[:1])
    assert result.checks[0].id == "exam-file" and result.checks[0].message


def test_an_unexpected_failure_is_that_submissions_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import checker.quiz.grading as grading

    def explode(path: Path):  # noqa: ANN202
        raise RuntimeError("boom")

    monkeypatch.setattr(grading, "load_exam_sheet", explode)
    ada = as_exam(form("ada"))
    result = grade(submission(tmp_path, exam_file(form("ada")), answers_text(ada, right_answers(ada))))
    assert result.earned == 0 and result.available == TOTAL and "RuntimeError: boom" in result.checks[0].message


def test_instructor_side_problems_are_errors_not_zeros(tmp_path: Path) -> None:
    """A pool edited after the exams went out is the grader's problem: reported, never charged to the student."""
    from dataclasses import replace

    from checker.quiz.pool import Pool

    ada = as_exam(form("ada"))
    changed = ada.items[0].question.id
    variants = tuple(replace(q, prompt=q.prompt + " (edited)") if q.id == changed else q for q in POOL.variants)
    setup = replace(SETUP, pool=Pool(POOL.path, variants, POOL.key))
    result = grade(submission(tmp_path, exam_file(form("ada")), answers_text(ada, right_answers(ada))), exam=setup)
    assert result.error and changed in result.error


# ---------------------------------------------------------------- the roster

def test_roster_reads_the_id_column_and_refuses_bad_ids(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text("name,login,email\nAda Lovelace,ada,ada@example.com\nBob,bob-1,bob@example.com\n")
    assert read_roster(roster) == ["ada", "bob-1"]
    roster.write_text("student\nada\n../etc\n")
    from checker.quiz.bank import QuizError

    with pytest.raises(QuizError, match="not a usable student id"):
        read_roster(roster)
    roster.write_text("student\nada\nADA\n")
    with pytest.raises(QuizError, match="appears twice"):
        read_roster(roster)


def test_exam_file_round_trips_through_its_text(tmp_path: Path) -> None:
    path = tmp_path / "ada.exam.toml"
    path.write_text(exam_file(form("ada")))
    exam = read_exam(path)
    assert not verify(exam, SETUP.secret), "what tomli-w writes must read back to exactly what was signed"
    assert exam.items == as_exam(form("ada")).items


# ---------------------------------------------------------------- the commands, end to end

def test_instructor_writes_exams_student_answers_one_grader_grades_it(tmp_path: Path) -> None:
    import subprocess

    from tests.coursecopy import COURSE_SCRIPT, course_env
    from tests.quiz_helpers import make_root

    root = make_root(COURSE.root, tmp_path / "course")
    (root / "quiz" / "exam").mkdir()
    (root / "quiz" / "exam" / "pool.toml").write_text(POOL.path.read_text())
    roster = tmp_path / "roster.csv"
    roster.write_text("name,login\nAda,ada\nBob,bob\n")
    run = lambda *args, **kw: subprocess.run([COURSE_SCRIPT, *args], cwd=root, capture_output=True, text=True,  # noqa: E731
                                             timeout=120, env=course_env(root), **kw)
    made = run("quiz", "exam", "--roster", str(roster), "--out", str(tmp_path / "exams"), "--name", "midterm")
    assert made.returncode == 0, made.stdout + made.stderr
    assert "created the exam secret" in made.stdout and (root / ".course" / "exam-secret").stat().st_mode & 0o077 == 0
    ada_file = tmp_path / "exams" / "ada.exam.toml"
    assert ada_file.is_file() and (tmp_path / "exams" / "bob.exam.toml").is_file()
    again = run("quiz", "exam", "--roster", str(roster), "--out", str(tmp_path / "again"), "--name", "midterm")
    assert again.returncode == 0 and "created the exam secret" not in again.stdout, "the secret is made once"
    assert (tmp_path / "again" / "ada.exam.toml").read_text() == ada_file.read_text(), "re-running writes the same exams"
    # the student answers the first question, then quits; the exam file is kept where it is handed in
    exam = read_exam(ada_file)
    first = exam.items[0]
    typed = right_answers(exam)[first.question.id]
    typed = " ".join(typed) if isinstance(typed, list) else str(typed)
    taken = run("quiz", "--exam", str(ada_file), input=f"{typed}\nq\n")
    assert taken.returncode == 0 and "Traceback" not in taken.stderr, taken.stdout + taken.stderr
    assert (root / "quiz" / "exam.toml").read_text() == ada_file.read_text()
    assert "nothing here can tell you the score" in taken.stdout
    from checker.quiz.forms import load_exam_sheet, load_secret

    sheet = load_exam_sheet(root / "quiz" / "exam-answers.toml")
    assert sheet.signature == exam.signature and set(sheet.answers) == {first.question.id}
    assert run("quiz", "--exam", str(ada_file), "--review").returncode == 2
    # the grader: the student's copy, the instructor's secret
    from dataclasses import replace

    setup = replace(SETUP, secret=load_secret(root / ".course" / "exam-secret"))
    result = grade_submission_quiz(COURSE, QUIZ, root, student="quiz-ada", exam=setup)
    assert not result.error and result.available == TOTAL and result.earned == first.question.points, \
        [c.message for c in result.checks][:3]
    assert grade_submission_quiz(COURSE, QUIZ, root, student="bob", exam=setup).earned == 0


def test_quiz_grading_options_for_course_grade() -> None:
    from checker.quiz.cli import QuizMode, quiz_grading
    from checker.registry import CourseError

    code = [lesson for lesson in COURSE.lessons if lesson.available and lesson.kind == "code"]
    everything = [lesson for lesson in COURSE.lessons if lesson.available]
    lessons, setup = quiz_grading(COURSE, everything, QuizMode.none)
    assert QUIZ not in lessons and setup is None, "by default the practice quiz is no part of the grade"
    with pytest.raises(CourseError, match="--quiz exam"):
        quiz_grading(COURSE, [QUIZ], QuizMode.none, named=True)
    lessons, setup = quiz_grading(COURSE, code, QuizMode.practice)
    assert QUIZ in lessons and setup is None
    from checker.quiz.bank import QuizError

    with pytest.raises(QuizError, match="no exam secret"):
        quiz_grading(COURSE, code, QuizMode.exam, secret=Path("/nonexistent/secret"))
