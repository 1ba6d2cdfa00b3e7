"""The chapter quiz (lesson 10): the bank meets the issue's rules, every key is right (predict
questions by running their code against the pinned SDK), the student edition holds no plain
answer, grading is exact, and the quiz works end to end in a terminal and in Jupyter.

Nothing here writes to the course folder: every run that saves answers or progress uses a
throwaway course root (tests/quiz_helpers.make_root).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from checker.quiz.answers import AnswerSheet, derive_seed, load_sheet, option_order, render_sheet, save_answer
from checker.quiz.bank import LETTERS, QuizError, load_bank, load_settings
from checker.quiz.grading import QuizResult, grade_question, grade_sheet
from checker.quiz.keys import (HEX64, SALT, build_hashed_key, disagreements, load_hashed_key, load_plain_key,
                               normalise)
from tests.conftest import COURSE
from tests.quiz_helpers import make_root, output_lines, right_answer, run_snippet, wrong_answer

SETTINGS = load_settings(COURSE)
BANK = load_bank(SETTINGS.bank)
PLAIN = load_plain_key(SETTINGS.plain_key, BANK)
HASHED = load_hashed_key(SETTINGS.key, BANK)
PREDICT = [q for q in BANK if q.kind == "predict"]
VERIFIED = [q for q in BANK if PLAIN[q.id].verify]
COURSE_CMD = [sys.executable, "-m", "checker.cli.app"]


def course_cmd(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COURSE_CMD, *args], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COURSE_ROOT": str(root), "COLUMNS": "120", **env})


# ---------------------------------------------------------------- the bank

def test_bank_meets_the_issue_rules() -> None:
    assert len(BANK) >= 40, f"the bank has {len(BANK)} questions; the issue asks for at least 40"
    per_lesson = Counter(q.lesson for q in BANK)
    thin = {n: per_lesson[n] for n in range(1, 10) if per_lesson[n] < 4}
    assert not thin, f"lessons with fewer than 4 questions: {thin}"
    code = [q for q in BANK if q.is_code_reading]
    assert len(code) >= 0.4 * len(BANK), f"only {len(code)}/{len(BANK)} questions read code; at least 40 % must"
    kinds = {q.kind for q in BANK} | {"predict-short" for q in PREDICT if not q.is_choice}
    assert {"single", "multi", "short", "predict", "predict-short"} <= kinds, f"missing kinds: {kinds}"
    short_types = {q.answer_type for q in BANK if not q.is_choice}
    assert {"int", "identifier"} <= short_types, "short answers should include numbers/codes and identifiers"


def test_registry_block_matches_the_bank() -> None:
    lesson = SETTINGS.lesson
    assert lesson.kind == "quiz" and lesson.available, "lesson-10 must be kind = \"quiz\", status = \"available\""
    assert 0.5 <= SETTINGS.pass_mark <= 0.9, f"pass_mark {SETTINGS.pass_mark} is not a sensible fraction"
    for path in (SETTINGS.bank, SETTINGS.key, SETTINGS.plain_key, SETTINGS.reference_answers):
        assert path.is_file(), f"course.toml names {path}, which does not exist"


def test_every_option_is_explained_once_and_in_one_line() -> None:
    for q in BANK:
        plain = PLAIN[q.id]
        texts = list(plain.why.values()) + list(plain.wrong.values())
        for text in texts:
            assert "\n" not in text and 25 <= len(text) <= 320, f"{q.id}: explanations are one line of 25–320 characters: {text!r}"
        assert len(set(texts)) == len(texts), f"{q.id}: two options share an explanation; each stands for its own idea"


def test_single_answer_keys_are_balanced_over_the_letters() -> None:
    keys = [PLAIN[q.id].correct[0] for q in BANK if q.is_choice and not q.is_multi]
    counts = Counter(keys)
    for letter in "ABCD":
        share = counts[letter] / len(keys)
        assert 0.2 <= share <= 0.3, f"{counts[letter]}/{len(keys)} single-answer keys are {letter}: keep every letter at 20–30 % ({dict(counts)})"
    for q in BANK:
        if q.is_multi:
            correct = PLAIN[q.id].correct
            assert 2 <= len(correct) < len(q.options), f"{q.id}: select-all needs 2+ correct and 1+ wrong options"


def test_no_question_gives_its_answer_away() -> None:
    for q in BANK:
        if not q.is_choice and q.answer_type != "int":  # (a number may fairly appear, e.g. "--workers 2")
            for accepted in PLAIN[q.id].correct:
                for shown in (q.id, q.title, q.prompt, q.placeholder):
                    assert not re.search(rf"(?<![\w-]){re.escape(accepted)}(?![\w-])", shown.casefold()), (
                        f"{q.id}: the answer {accepted!r} appears in its own id, title or prompt")
        for option in q.options:
            assert not re.fullmatch(r"[A-H](\s*(,|and|or)\s*[A-H])+\.?", option.strip()), f"{q.id}: option {option!r} combines letters"


# ---------------------------------------------------------------- the keys: right, and hidden in the student edition

@pytest.mark.parametrize("question", PREDICT, ids=[q.id for q in PREDICT])
def test_predict_question_key_matches_what_the_sdk_does(question) -> None:
    printed = run_snippet(question.code, question.id)
    got = output_lines(printed)
    plain, hashed = PLAIN[question.id], HASHED[question.id]
    if question.is_choice:
        matching = [question.letters[i] for i, option in enumerate(question.options) if output_lines(option) == got]
        assert matching, (f"{question.id}: the snippet printed {printed.strip()!r}, which is none of the options; "
                          f"the SDK's behaviour or the snippet changed")
        assert len(matching) == 1, f"{question.id}: options {matching} are identical outputs"
        assert list(plain.correct) == matching, (f"{question.id}: the snippet printed option {matching[0]} "
                                                 f"but key.toml says {plain.correct[0]}")
        index = question.letters.index(matching[0])
        assert hashed.option_correct(index, matching[0]), f"{question.id}: the hashed key disagrees with the SDK"
    else:
        answer = normalise("\n".join(got), question.answer_type)
        assert answer in plain.correct, f"{question.id}: the snippet printed {printed.strip()!r}, key.toml accepts {plain.correct}"
        assert hashed.accepts(answer), f"{question.id}: the hashed key does not accept what the SDK prints"
        for wrong in plain.wrong:
            assert wrong != answer, f"{question.id}: {wrong!r} is explained as wrong but is what the SDK prints"


@pytest.mark.parametrize("question", VERIFIED, ids=[q.id for q in VERIFIED])
def test_fact_behind_the_key_holds_on_the_installed_sdk(question) -> None:
    run_snippet(PLAIN[question.id].verify, question.id)  # each script asserts its own fact


def test_hashed_key_agrees_with_the_plain_key_and_is_current() -> None:
    problems = disagreements(BANK, PLAIN, HASHED)
    assert not problems, "quiz/key.hashed.toml disagrees with quiz/key.toml: " + "; ".join(problems[:5])
    rebuilt = build_hashed_key(BANK, PLAIN, previous=SETTINGS.key)
    assert rebuilt == SETTINGS.key.read_text(encoding="utf-8"), (
        "quiz/key.hashed.toml is stale: run `python -m checker.quiz build-key`")
    reference = tomllib.loads(SETTINGS.reference_answers.read_text(encoding="utf-8"))
    assert set(reference["answers"]) == {q.id for q in BANK}, "solutions/quiz-answers.toml must answer every question"


def _strings(node: object, path: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", key, True
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value, path)
    else:
        yield path, node, False


def test_student_edition_holds_no_plain_answer() -> None:
    text = SETTINGS.key.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    qids = {q.id for q in BANK}
    for path, value, is_key in _strings(data):
        if is_key:
            assert value in qids | {"format", "questions", "salt", "options", "why", "accepted"} or HEX64.match(value), (
                f"key.hashed.toml has a readable key {value!r} at {path}")
        elif isinstance(value, str):
            assert HEX64.match(value) or SALT.match(value) or re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", value), (
                f"key.hashed.toml holds a readable value at {path}: {value[:40]!r}")
    assert set(data) == {"format", "questions"}, f"unexpected top-level entries {sorted(data)}"
    values = {str(value).casefold() for _, value, _ in _strings(data["questions"])}
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#")).casefold()
    for q in BANK:
        plain = PLAIN[q.id]
        leaks = [t for t in (*plain.why.values(), *plain.wrong.values()) if t[:30] in text]
        assert not leaks, f"{q.id}: an explanation is readable in key.hashed.toml"
        if not q.is_choice:
            for answer in {a.casefold() for a in (*plain.correct, plain.shown, *plain.wrong)}:
                assert answer not in values, f"{q.id}: the answer {answer!r} is a value in key.hashed.toml"
                if not answer.lstrip("-").isdigit():  # (the header's prose may mention SHA-256 or "1 correct")
                    assert not re.search(rf"(?<![\w-]){re.escape(answer)}(?![\w-])", comments), (
                        f"{q.id}: the answer {answer!r} is readable in key.hashed.toml's comments")
    bank_text = SETTINGS.bank.read_text(encoding="utf-8")
    assert "why" not in tomllib.loads(bank_text)["question"][0], "the bank must not carry explanations"
    release = pytest.importorskip("checker.release")
    assert "quiz/key.toml" in release.EXCLUDE_GLOBS, "the student release must leave out the plain key"


# ---------------------------------------------------------------- grading

def test_reference_answers_pass_through_the_engine() -> None:
    from checker.runner.lesson import run_lesson

    result = run_lesson(COURSE, SETTINGS.lesson, "solutions")
    assert isinstance(result, QuizResult) and not result.error, result.error
    assert [c.id for c in result.checks] == [q.id for q in BANK], "one CheckResult per question, in bank order"
    failing = {c.id: c.message for c in result.checks if not c.passed}
    assert not failing, f"the reference answers fail: {failing}"
    assert result.ok and result.earned == result.available == BANK.points


@pytest.mark.parametrize("seed", ["", "ada@example.com", "5e1f0c2a9b3d", "ünïcødé student"])
def test_right_answers_score_full_marks_for_any_option_order(seed: str) -> None:
    answers = {q.id: right_answer(q, PLAIN[q.id], seed) for q in BANK}
    verdicts = grade_sheet(BANK, HASHED, AnswerSheet(Path("x"), seed, answers, True), seed)
    wrong = [(v.question.id, v.status, v.feedback) for v in verdicts if v.status != "right"]
    assert not wrong, f"right answers graded wrong with seed {seed!r}: {wrong[:3]}"
    answers = {q.id: wrong_answer(q, PLAIN[q.id], seed) for q in BANK}
    verdicts = grade_sheet(BANK, HASHED, AnswerSheet(Path("x"), seed, answers, True), seed)
    right = [v.question.id for v in verdicts if v.status == "right" or v.points]
    assert not right, f"wrong answers earned points with seed {seed!r}: {right}"
    assert all(v.feedback for v in verdicts), "every wrong answer gets an explanation"


def test_multiple_select_earns_partial_credit_from_hashes() -> None:
    seed = "partial"
    for q in (q for q in BANK if q.is_multi):
        correct = list(PLAIN[q.id].correct)
        wrong = [letter for letter in q.letters if letter not in correct]
        shown = lambda letters: " ".join(sorted(LETTERS[option_order(seed, q.id, len(q.options)).index(q.letters.index(x))] for x in letters))  # noqa: E731
        one = grade_question(q, HASHED[q.id], shown(correct[:1]), seed)
        assert one.status == "partial" and one.fraction == pytest.approx(1 / len(correct)), (q.id, one)
        assert "not selected" in one.feedback[-1]
        mixed = grade_question(q, HASHED[q.id], shown(correct[:1] + wrong[:1]), seed)
        assert mixed.fraction == pytest.approx(max(0, 1 / len(correct) - 1 / len(wrong))), (q.id, mixed)
        assert mixed.feedback[0].startswith(shown(wrong[:1])), "the wrong pick is explained"
        every = grade_question(q, HASHED[q.id], shown(list(q.letters)), seed)
        assert every.fraction == 0, f"{q.id}: ticking every box must not earn points"
        full = grade_question(q, HASHED[q.id], shown(correct), seed)
        assert full.status == "right" and full.points == q.points


@pytest.mark.parametrize(("raw", "kind", "expected"), [
    ("-32 001", "int", "-32001"), ("\u221232001", "int", "-32001"), ('"-32001"', "int", "-32001"),
    ("HTTP 421", "int", "421"), ("+2", "int", "2"), ("`json_response`", "identifier", "json_response"),
    ("[project.scripts]", "identifier", "project.scripts"), ("InMemorySubscriptionBus()", "identifier", "inmemorysubscriptionbus"),
    ("  TypeError ", "text", "typeerror"), ("MCPError   -32602", "text", "mcperror -32602"),
])
def test_short_answers_are_normalised(raw: str, kind: str, expected: str) -> None:
    assert normalise(raw, kind) == expected


def test_seed_is_stable_per_student_and_shuffles() -> None:
    assert derive_seed("Ada@Example.com") == derive_seed(" ada@example.com ")
    assert derive_seed("ada") != derive_seed("bob")
    q = BANK["l1-context-schema"]
    assert option_order("", q.id, 4) == [0, 1, 2, 3], "seed \"\" shows the bank's order"
    orders = {tuple(option_order(derive_seed(f"student{i}"), q.id, 4)) for i in range(30)}
    assert len(orders) > 6, "options are not really shuffled per student"
    assert option_order("x", q.id, 4) == option_order("x", q.id, 4)


# ---------------------------------------------------------------- the answers file

def test_saving_keeps_every_other_answer_and_never_overwrites_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "answers.toml"
    path.write_text('[quiz]\nseed = "s1"\n\n[answers]\nl9-eras = "A"\nl0-my-note = "kept"\n')
    order = [q.id for q in BANK]
    save_answer(SETTINGS, path, "l1-context-schema", "B", order)
    save_answer(SETTINGS, path, "l3-deprecated-calls", ["A", "C"], order)
    sheet = load_sheet(path)
    assert sheet.seed == "s1", "an existing seed must never change (the letters would change meaning)"
    assert sheet.answers == {"l1-context-schema": "B", "l3-deprecated-calls": ["A", "C"], "l9-eras": "A", "l0-my-note": "kept"}
    assert path.read_text().startswith("# "), "the file documents its own format at the top"
    path.write_text("[answers\nl1-context-schema = 'B'\n")
    before = path.read_text()
    with pytest.raises(QuizError, match="not valid TOML"):
        save_answer(SETTINGS, path, "l9-eras", "B", order)
    assert path.read_text() == before, "a broken answers file must be left exactly as it was"
    assert not [p for p in tmp_path.iterdir() if p.name != "answers.toml"], "no temporary file may be left behind"


def test_render_round_trips_awkward_values(tmp_path: Path) -> None:
    sheet = AnswerSheet(tmp_path / "a.toml", "s", {"l5-host-status": 'quote " back\\slash \x7f', "l7-x": 421}, True)
    text = render_sheet(sheet, [], "s")
    assert tomllib.loads(text)["answers"] == sheet.answers


# ---------------------------------------------------------------- `course check lesson-10` and bad input

def test_check_exits_1_without_answers_and_0_against_solutions(tmp_path: Path) -> None:
    root = make_root(COURSE.root, tmp_path / "course", reference=True)
    missing = course_cmd(root, "check", "lesson-10")
    assert missing.returncode == 1, f"no answers must fail the quiz (exit {missing.returncode}):\n{missing.stdout[-800:]}"
    assert "no answers yet" in missing.stdout and "Traceback" not in missing.stderr
    assert "revisit" not in missing.stdout, "unanswered questions reveal nothing, not even a hint"
    reference = course_cmd(root, "check", "lesson-10", "--against", "solutions")
    assert reference.returncode == 0, f"the reference answers must pass:\n{reference.stdout[-1500:]}{reference.stderr[-800:]}"
    assert f"{BANK.points}/{BANK.points} points" in reference.stdout


def test_pass_mark_decides_the_exit_code(tmp_path: Path) -> None:
    root = make_root(COURSE.root, tmp_path / "course")
    path = root / "quiz" / "answers.toml"
    seed = "pass-mark"
    needed = SETTINGS.pass_mark * BANK.points
    right = {q.id for q in BANK if q.points == 1}                     # one-point questions right ...
    while sum(BANK[qid].points for qid in right) - 1 >= needed:       # ... just enough to reach the pass mark
        right.pop()

    def write(right_ids: set[str]) -> None:
        answers = {q.id: (right_answer if q.id in right_ids else wrong_answer)(q, PLAIN[q.id], seed) for q in BANK}
        path.write_text(render_sheet(AnswerSheet(path, seed, answers, True), [], seed))

    write(right)
    passed = course_cmd(root, "check", "lesson-10", "--json")
    data = json.loads(passed.stdout)
    assert data["earned"] >= needed > data["earned"] - 1, "the test should sit exactly at the pass mark"
    assert passed.returncode == 0 and data["ok"], f"{data['earned']}/{data['available']} reaches the pass mark, yet exit {passed.returncode}"
    write(right - {sorted(right)[0]})
    below = course_cmd(root, "check", "lesson-10")
    assert below.returncode == 1, f"one point under the pass mark must fail (exit {below.returncode})"
    assert "you answered" in below.stdout, "wrong answers are shown with the explanation of the choice"


@pytest.mark.parametrize(("content", "expected"), [
    ('[quiz]\nseed = "s"\n[answers]\nl1-context-schema = "E"\n', "l1-context-schema: 'E' is not one of the options A–D"),
    ('[quiz]\nseed = "s"\n[answers]\nl1-context-schema = "A, B"\n', "l1-context-schema: this question has one answer"),
    ('[quiz]\nseed = "s"\n[answers]\nl2-decline = 2\n', "l2-decline: 2 is not a letter"),
    ('[quiz]\nseed = "s"\n[answers]\nl5-host-status = "four hundred"\n', "l5-host-status: 'four hundred': this question expects a whole number"),
    ('[quiz]\nseed = "s"\n[answers]\nl1-context-shema = "A"\n', "unknown question 'l1-context-shema'"),
    ('[quiz]\nseed = "s"\n[answers\nl1-context-schema = "A"\n', "is not valid TOML"),
    ('[quiz]\nseed = 7\n', "seed must be a string"),
    ('answers = "A"\n', "must have a [quiz] table and an [answers] table"),
])
def test_bad_answers_get_one_line_naming_the_question(tmp_path: Path, content: str, expected: str) -> None:
    root = make_root(COURSE.root, tmp_path / "course")
    (root / "quiz" / "answers.toml").write_text(content)
    proc = course_cmd(root, "check", "lesson-10", COLUMNS="400")
    assert proc.returncode == 1, f"exit {proc.returncode} for {content!r}"
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-1500:]
    lines = [line for line in proc.stdout.splitlines() if expected in line]
    assert lines, f"expected a line with {expected!r} in:\n{proc.stdout[:1500]}"


def test_unknown_lesson_option_and_question_are_usage_errors(tmp_path: Path) -> None:
    root = make_root(COURSE.root, tmp_path / "course")
    proc = course_cmd(root, "check", "lesson-10", "--only", "l1-nope")
    assert proc.returncode == 2 and "no question 'l1-nope'" in proc.stderr and "Traceback" not in proc.stderr
    proc = course_cmd(root, "quiz", "--lesson", "12")
    assert proc.returncode == 2 and "unknown lesson" in proc.stderr and "Traceback" not in proc.stderr
    proc = course_cmd(root, "hint", "lesson-10", "l4-sibling-folder")
    assert proc.returncode == 0 and "revisit lesson 4" in proc.stdout


# ---------------------------------------------------------------- `course quiz` in a real terminal

def _spawn(root: Path, *args: str):
    pexpect = pytest.importorskip("pexpect")
    env = {**os.environ, "COURSE_ROOT": str(root), "COURSE_STUDENT": "pexpect@example.com", "COLUMNS": "110",
           "LINES": "50", "TERM": "xterm-256color"}
    env.pop("COURSE_QUIZ_ANSWERS", None)
    return pexpect.spawn(sys.executable, ["-m", "checker.cli.app", "quiz", *args], cwd=str(root), env=env,
                         encoding="utf-8", timeout=30, dimensions=(50, 110))


def _subtitle_id(child) -> str:
    """The id of the question on screen (printed in the panel's bottom border)."""
    child.expect(r"(l[1-9]-[a-z0-9-]+) \S*─╯")
    return child.match.group(1)


def test_terminal_quiz_saves_resumes_and_reviews(tmp_path: Path) -> None:
    import pexpect

    root = make_root(COURSE.root, tmp_path / "course")
    seed = derive_seed("pexpect@example.com")
    answers_file = root / "quiz" / "answers.toml"

    child = _spawn(root)
    child.expect("You have answered 0 of")
    first = _subtitle_id(child)
    assert first == BANK.questions[0].id
    child.expect("Your answer")
    child.sendline("Z")
    child.expect("is not one of the options")                       # bad input: asked again, nothing saved
    wrong = wrong_answer(BANK[first], PLAIN[first], seed)
    child.sendline(wrong)                                            # a deliberate mistake, reviewed later
    child.expect(f"saved: {wrong}")
    second = _subtitle_id(child)
    child.expect("Your answer")
    child.sendline("s")                                              # skipped: stays unanswered
    third = _subtitle_id(child)
    child.expect("Your answer")
    child.sendline(right_answer(BANK[third], PLAIN[third], seed))
    child.expect("saved")
    _subtitle_id(child)
    child.expect("Your answer")
    child.sendline("q")
    child.expect("continue where you left off")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    saved = load_sheet(answers_file)
    assert saved.seed == seed and set(saved.answers) == {first, third}, saved.answers

    child = _spawn(root)                                              # resume: the skipped one comes first
    child.expect("You have answered 2 of")
    current = _subtitle_id(child)
    assert current == second, f"the quiz resumed at {current}, not at the first unanswered question {second}"
    asked = 0
    while True:
        child.expect("Your answer")
        child.sendline(right_answer(BANK[current], PLAIN[current], seed))
        child.expect("saved")
        asked += 1
        index = child.expect([r"(l[1-9]-[a-z0-9-]+) \S*─╯", "What you missed"])
        if index == 1:
            break
        current = child.match.group(1)
    child.expect("Your answers are in")
    review = " ".join(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", child.before).split())
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert asked == len(BANK) - 2, f"asked {asked} questions on resume; expected the {len(BANK) - 2} left"
    picked = next(letter for letter in BANK[first].letters if letter not in PLAIN[first].correct)
    assert first in review and PLAIN[first].why[picked][:50] in review, "the review explains why the pick was wrong"
    assert PLAIN[first].why[PLAIN[first].correct[0]][:50] not in review, "... without giving the right answer away"
    check = course_cmd(root, "check", "lesson-10")
    assert check.returncode == 0, f"{len(BANK) - 1}/{len(BANK)} right should pass:\n{check.stdout[-600:]}"
    progress = json.loads((root / ".course" / "progress.json").read_text())
    assert progress["lesson-10"]["status"] == "passed"


def test_terminal_quiz_survives_ctrl_c_and_keeps_answers(tmp_path: Path) -> None:
    import pexpect

    root = make_root(COURSE.root, tmp_path / "course")
    seed = derive_seed("pexpect@example.com")
    answers_file = root / "quiz" / "answers.toml"
    answers_file.write_text(render_sheet(AnswerSheet(answers_file, seed, {"l9-eras": "A"}, True), [], seed))
    child = _spawn(root, "--lesson", "2")
    qid = _subtitle_id(child)
    child.expect("Your answer")
    child.sendline(right_answer(BANK[qid], PLAIN[qid], seed))
    child.expect("saved")
    child.expect("Your answer")
    child.sendintr()
    child.expect("Stopped")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130 and "Traceback" not in (child.before or "")
    assert set(load_sheet(answers_file).answers) == {"l9-eras", qid}, "answers were lost on Ctrl-C"


# ---------------------------------------------------------------- the notebook

NOTEBOOK = COURSE.root / "lessons" / "10-quiz.ipynb"


def test_notebook_asks_every_question_once() -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    asked = [m.group(1) for c in nb.cells if c.cell_type == "code"
             for m in re.finditer(r'answer\("([^"]+)", ""\)', c.source)]
    assert asked == [q.id for q in BANK], "the notebook must ask every bank question once, in bank order, unanswered"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_notebook_saves_answers_and_its_check_cell_grades_them(tmp_path: Path) -> None:
    """A student's kernel (the starter edition): answer in cells, then the check cell grades that file."""
    import nbformat
    from nbclient import NotebookClient

    root = make_root(COURSE.root, tmp_path / "course")
    seed = derive_seed("notebook student")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        match = re.fullmatch(r'answer\("([^"]+)", ""\)', cell.source.strip()) if cell.cell_type == "code" else None
        if match:
            qid = match.group(1)
            typed = right_answer(BANK[qid], PLAIN[qid], seed) if qid != "l2-decline" else wrong_answer(BANK[qid], PLAIN[qid], seed)
            cell.source = f"answer({qid!r}, {typed!r})"
    answers = tmp_path / "mine.toml"
    env = {"COURSE_ROOT": str(root), "COURSE_STUDENT": "notebook student", "COURSE_QUIZ_ANSWERS": str(answers),
           "PYTHONPATH": str(root / "capstone" / "src")}  # the kernel imports this copy's starter
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(root)}}).execute()
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    sheet = load_sheet(answers)
    assert len(sheet.answers) == len(BANK) and sheet.seed == seed
    text = "\n".join(o.get("text", "") + json.dumps(o.get("data", {})) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Traceback" not in text
    assert f"{len(BANK) - 1} passed, 1 failed" in text, "the check cell should grade the answers the notebook saved"
    assert "l2-decline" in text, "the review names the missed question"
