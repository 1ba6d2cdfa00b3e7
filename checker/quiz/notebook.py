"""The quiz inside Jupyter: `answer("l1-context-schema", "C")` in a cell, saved to the same file
`course quiz` uses.

Which file? The one the notebook's check cell grades. `check("lesson-10")`, like every lesson's
check cell, grades the edition the kernel imports: a kernel that imports your package
(capstone/, the usual case) grades **your answers file**, quiz/answers.toml, which is where
`answer()` saves. A kernel started with the reference edition on its path (the course's own
notebook tests run with PYTHONPATH=solutions/src) grades the reference answers,
solutions/quiz-answers.toml; there `answer()` shows questions but saves nothing, so running the
notebook can never overwrite the reference answers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rich.console import Console

from checker.quiz.answers import BadAnswer, check_response, option_order, save_answer
from checker.quiz.bank import QuizError, load_settings
from checker.quiz.forms import Exam, ExamItem, install_exam, load_exam_sheet, save_exam_answer
from checker.quiz.grading import grade_sheet
from checker.quiz.ui import Session, question_view, review_view
from checker.registry import CourseError, load_course


def _edition(package: str, course_solutions: Path, course_starter: Path) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return "starter"
    found = Path(list(spec.submodule_search_locations)[0]).resolve().parent
    if found == course_solutions.resolve():
        return "solutions"
    if found == course_starter.resolve():
        return "starter"
    return str(found)


def _session() -> tuple[Session, bool]:
    course = load_course()
    against = _edition(course.package, course.solutions, course.starter)
    return Session.open(course, against), against == "starter"


def _console() -> Console:
    return Console(highlight=False)


def answer(qid: str, response: str | list[str] | int | None = "") -> None:
    """Show question `qid`; with a response ("B", "A C", ["A", "C"], "421"), also save it."""
    console = _console()
    try:
        session, writable = _session()
        question = session.bank[qid]
        sheet = session.sheet()
        order = option_order(sheet.effective_seed(session.settings), qid, len(question.options))
        number = [q.id for q in session.bank].index(qid) + 1
        blank = response is None or (isinstance(response, (str, list)) and not response)
        if blank:
            console.print(question_view(question, order, number, len(session.bank), sheet.answers.get(qid)))
            console.print("Type your answer between the quotes and run the cell again.", style="dim")
            return
        value = check_response(response, question)
        if not writable:
            console.print(question_view(question, order, number, len(session.bank)))
            console.print(f"This kernel imports the reference edition, so nothing is saved; the check cell grades "
                          f"{session.shown_path()}.", style="yellow", markup=False)
            return
        sheet = save_answer(session.settings, session.path, qid, value, session.order)
        console.print(question_view(question, order, number, len(session.bank), value))
        done = sum(sheet.answered(q.id) for q in session.bank)
        console.print(f"saved to {session.shown_path()} ({done}/{len(session.bank)} answered)", style="green",
                      markup=False)
    except BadAnswer as exc:
        console.print(f"{qid}: {exc} — nothing was saved", style="red", markup=False)
    except (QuizError, CourseError) as exc:
        console.print(str(exc), style="red", markup=False)


def show(qid: str) -> None:
    """Show one question (and your saved answer) without changing anything."""
    answer(qid, "")


def progress() -> None:
    """Where your answers are saved and how many you have given."""
    console = _console()
    try:
        session, writable = _session()
        sheet = session.sheet()
    except (QuizError, CourseError) as exc:
        console.print(str(exc), style="red", markup=False)
        return
    done = sum(sheet.answered(q.id) for q in session.bank)
    where = session.shown_path() if writable else f"{session.shown_path()} (reference edition: read only)"
    console.print(f"{len(session.bank)} questions, {done} answered; answers file: {where}; pass mark "
                  f"{session.settings.pass_percent} %; option order seed: "
                  f"{sheet.effective_seed(session.settings) or 'none (bank order)'}", markup=False)


def review() -> None:
    """Score your answers and explain what you missed (the same review as `course quiz`)."""
    console = _console()
    try:
        session, _ = _session()
        sheet = session.sheet()
        verdicts = grade_sheet(session.bank, session.key, sheet, sheet.effective_seed(session.settings))
    except (QuizError, CourseError) as exc:
        console.print(str(exc), style="red", markup=False)
        return
    console.print(review_view(verdicts, session.settings, session.shown_path()))


class ExamPaper:
    """An exam in the notebook: `paper = exam("quiz/exam.toml")`, then `paper.answer(3, "B")`.

    Answers go to quiz/exam-answers.toml, the same file `course quiz --exam` writes. There is no
    review: the exam's key stays with the instructor.
    """

    def __init__(self, exam: Exam, answers: Path) -> None:
        self.exam = exam
        self.answers = answers

    def _item(self, ref: int | str) -> tuple[int, ExamItem]:
        ids = [item.question.id for item in self.exam.items]
        if isinstance(ref, int) and not isinstance(ref, bool) and 1 <= ref <= len(ids):
            return ref, self.exam.items[ref - 1]
        if isinstance(ref, str) and ref in ids:
            return ids.index(ref) + 1, self.exam.items[ids.index(ref)]
        raise QuizError(f"the exam has no question {ref!r}: use its number (1–{len(ids)}) or its id")

    def show(self, ref: int | str | None = None) -> None:
        """Show one question, or all of them, with the answers you saved."""
        console = _console()
        saved = load_exam_sheet(self.answers).answers
        refs = [ref] if ref is not None else list(range(1, len(self.exam.items) + 1))
        for each in refs:
            number, item = self._item(each)
            console.print(question_view(item.question, item.order, number, len(self.exam.items),
                                        saved.get(item.question.id)))

    def answer(self, ref: int | str, response: str | list[str] | int) -> None:
        """Save your answer to question `ref` (its number or id): "B", "A C", ["A", "C"] or "421"."""
        console = _console()
        try:
            number, item = self._item(ref)
            value = check_response(response, item.question)
            sheet = save_exam_answer(self.exam, self.answers, item.question.id, value)
        except BadAnswer as exc:
            console.print(f"question {ref}: {exc} — nothing was saved", style="red", markup=False)
            return
        except (QuizError, CourseError) as exc:
            console.print(str(exc), style="red", markup=False)
            return
        console.print(question_view(item.question, item.order, number, len(self.exam.items), value))
        done = sum(sheet.answered(i.question.id) for i in self.exam.items)
        console.print(f"saved to {self.answers.name} ({done}/{len(self.exam.items)} answered)", style="green",
                      markup=False)

    def progress(self) -> None:
        sheet = load_exam_sheet(self.answers)
        missing = [str(n) for n, item in enumerate(self.exam.items, 1) if not sheet.answered(item.question.id)]
        _console().print(f"exam {self.exam.name} for {self.exam.student}: {len(self.exam.items) - len(missing)} of "
                         f"{len(self.exam.items)} answered" + (f"; not yet: {', '.join(missing)}" if missing else ""),
                         markup=False)


def exam(path: str | Path = "quiz/exam.toml") -> ExamPaper | None:
    """Open the exam file your instructor gave you (kept as quiz/exam.toml) and show its questions."""
    console = _console()
    try:
        course = load_course()
        settings = load_settings(course)
        source = Path(path).expanduser()
        source = source if source.is_absolute() else course.root / source
        if not source.exists():
            console.print(f"No exam file at {path}. If your instructor gave you one, save it as quiz/exam.toml "
                          f"(or pass its path). The practice questions above need none.", markup=False)
            return None
        paper = ExamPaper(install_exam(settings, source)[0], settings.exam_answers)
    except (QuizError, CourseError) as exc:
        console.print(str(exc), style="red", markup=False)
        return None
    paper.show()
    paper.progress()
    return paper
