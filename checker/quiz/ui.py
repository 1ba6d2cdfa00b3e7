"""What the quiz looks like: a question, the review, and `course quiz`, the interactive terminal quiz.

The same renderables serve the terminal and the notebook (rich renders HTML in Jupyter).
`course quiz` asks the questions you have not answered yet (so it resumes where you stopped),
saves after every answer, and ends with a review that explains what you missed.
`course quiz --exam FILE` asks an exam's questions the same way and saves to the exam answers
file; an exam has no review, because the student's machine holds no key for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.markdown import Markdown
from rich.padding import Padding
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from checker.quiz.answers import (
    AnswerSheet,
    BadAnswer,
    Raw,
    check_response,
    is_blank,
    load_sheet,
    option_order,
    save_answer,
)
from checker.quiz.bank import Bank, Question, QuizError, QuizSettings, load_bank, load_settings
from checker.quiz.forms import install_exam, load_exam_sheet, save_exam_answer
from checker.quiz.grading import Verdict, answers_path, grade_lesson, grade_sheet
from checker.quiz.keys import HashedAnswer, load_hashed_key
from checker.registry import Course, CourseError

STATUS_MARK = {"right": ("✓", "green"), "partial": ("◐", "yellow"), "wrong": ("✗", "red"),
               "invalid": ("!", "red"), "unanswered": ("·", "dim")}


@dataclass
class Session:
    """Everything one quiz sitting needs, loaded once."""

    settings: QuizSettings
    bank: Bank
    key: dict[str, HashedAnswer]
    path: Path

    @classmethod
    def open(cls, course: Course, against: str = "starter") -> Session:
        settings = load_settings(course)
        if not settings.lesson.available:
            raise CourseError(f"{settings.lesson.id} ({settings.lesson.title}) is coming soon")
        bank = load_bank(settings.bank)
        return cls(settings, bank, load_hashed_key(settings.key, bank), answers_path(settings, against))

    @property
    def order(self) -> list[str]:
        return [q.id for q in self.bank]

    def sheet(self) -> AnswerSheet:
        return load_sheet(self.path)

    def shown_path(self) -> str:
        try:
            return str(self.path.relative_to(self.settings.course.root))
        except ValueError:
            return str(self.path)


# ---------------------------------------------------------------- rendering

def _option_cell(question: Question, text: str) -> RenderableType:
    if question.code_options:
        return Syntax(text, "python", theme="ansi_dark", background_color="default", word_wrap=True)
    if question.kind == "predict":
        return Text(text)              # program output: shown verbatim
    return Markdown(text)


def question_view(question: Question, order: Sequence[int], number: int | None = None, total: int | None = None,
                  saved: object = None) -> RenderableType:
    """A question as the student sees it: `order` is the canonical index of each option as shown."""
    parts: list[RenderableType] = [Markdown(question.prompt)]
    if question.code:
        parts.append(Panel(Syntax(question.code, "python", theme="ansi_dark", background_color="default",
                                  word_wrap=True), border_style="dim", padding=(0, 1)))
    if question.is_choice:
        table = Table.grid(padding=(0, 1))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for position, canonical in enumerate(order):
            table.add_row(f"{question.letters[position]})", _option_cell(question, question.options[canonical]))
        parts.append(table)
    elif question.placeholder:
        parts.append(Text(f"Answer with {question.placeholder}.", style="dim"))
    if not is_blank(saved):
        shown = ", ".join(saved) if isinstance(saved, list) else str(saved)
        parts.append(Text.assemble(("your saved answer: ", "dim"), (shown, "bold")))
    where = f"Question {number}/{total} · " if number else ""
    title = f"{where}lesson {question.lesson} · {question.kind_label} · {question.points} pt"
    return Panel(Group(*parts), title=Text(title, style="bold"), subtitle=Text(question.id, style="dim"),
                 title_align="left", subtitle_align="right", padding=(0, 1))


def _points(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _score_line(verdicts: list[Verdict], settings: QuizSettings) -> Text:
    earned = round(sum(v.points for v in verdicts), 2)
    total = sum(v.question.points for v in verdicts)
    percent = 100 * earned / total if total else 0
    passed = earned >= settings.pass_mark * total - 1e-9
    verdict = ("passed", "bold green") if passed else ("not yet", "bold red")
    return Text.assemble(("Score: ", "bold"), f"{_points(earned)}/{total} points ({percent:.0f} %)  —  pass mark "
                         f"{settings.pass_percent} %: ", verdict)


def review_view(verdicts: list[Verdict], settings: QuizSettings, answers_file: str) -> RenderableType:
    """The end-of-quiz review: the score, then every question you missed with its explanation."""
    parts: list[RenderableType] = [Text("Review", style="bold underline"), _score_line(verdicts, settings)]
    counts = {s: sum(v.status == s for v in verdicts) for s in STATUS_MARK}
    parts.append(
        Text(
            f"{counts['right']} right, {counts['partial']} partly right, {counts['wrong'] + counts['invalid']} "
            f"wrong, {counts['unanswered']} not answered",
            style="dim",
        )
    )
    missed = [v for v in verdicts if v.status in ("wrong", "partial", "invalid")]
    if missed:
        parts.append(Text("\nWhat you missed", style="bold"))
    for v in missed:
        mark, colour = STATUS_MARK[v.status]
        q = v.question
        parts.append(Text.assemble((f" {mark} ", f"bold {colour}"), (f"[L{q.lesson}] {q.title}", "bold"),
                                   (f"  {q.id}, {_points(v.points)}/{q.points} pt", "dim")))
        if v.given and q.is_choice and v.status != "invalid":
            parts.append(Padding(Text(f"your answer: {v.given}", style="dim"), (0, 0, 0, 5)))
        for line in v.feedback:
            parts.append(Padding(Text(line, style=colour if v.status == "invalid" else ""), (0, 0, 0, 5)))
    unanswered = [v.question.id for v in verdicts if v.status == "unanswered"]
    if unanswered:
        parts.append(Text(f"\nNot answered yet ({len(unanswered)}): {', '.join(unanswered)}", style="yellow"))
    parts.append(Text(f"\nYour answers are in {answers_file}. To change them, use the notebook or\n"
                      "  uv run course quiz --redo --lesson N\nand to grade them:\n  uv run course check lesson-10",
                      style="dim"))
    return Group(*parts)


# ---------------------------------------------------------------- the terminal quiz

QUIT = {"q", "quit", "exit", ":q"}
SKIP = {"s", "skip"}


def _prompt(question: Question) -> str:
    if question.is_multi:
        how = f"letters {question.letters[0]}–{question.letters[-1]}, e.g. A C"
    elif question.is_choice:
        how = f"{question.letters[0]}–{question.letters[-1]}"
    else:
        how = question.placeholder or "type it"
    return f"[bold]Your answer[/] [dim]({how}; s skip, q save & quit)[/]: "


def _ask(console: Console, question: Question, order: Sequence[int], number: int, total: int, saved: object,
         save: Callable[[Raw], None]) -> str:
    """Ask until a valid answer, a skip or a quit. Returns "saved", "skip" or "quit"."""
    console.print(question_view(question, order, number, total, saved))
    while True:
        raw = console.input(_prompt(question)).strip()
        if raw.lower() in QUIT:
            return "quit"
        if raw.lower() in SKIP:
            return "skip"
        if not raw:
            console.print("  type an answer, [bold]s[/] to skip or [bold]q[/] to save and quit", style="yellow")
            continue
        try:
            value = check_response(raw, question)
        except BadAnswer as exc:
            console.print(f"  {exc}", style="red", markup=False)
            continue
        save(value)
        shown = ", ".join(value) if isinstance(value, list) else str(value)
        console.print(f"  saved: {shown}", style="green", markup=False)
        return "saved"


def take_quiz(course: Course, console: Console, lesson: str | None = None, redo: bool = False,
              review_only: bool = False) -> int:
    """`course quiz`. Returns the exit code (0; 130 when interrupted). Problems raise CourseError."""
    session = Session.open(course)
    sheet = session.sheet()
    seed = sheet.effective_seed(session.settings)
    questions = list(session.bank)
    if lesson:
        wanted = course.lesson(lesson).number
        questions = [q for q in questions if q.lesson == wanted]
        if not questions:
            raise QuizError(f"the quiz has no questions about lesson {wanted}")
    position = {q.id: i + 1 for i, q in enumerate(session.bank)}
    todo = [q for q in questions if redo or not sheet.answered(q.id)]
    answered = sum(sheet.answered(q.id) for q in session.bank)
    if not review_only:
        console.print(Text.assemble(
            ("Chapter quiz (practice)", "bold"), f" — {len(session.bank)} questions on lessons 1–9, pass mark "
            f"{session.settings.pass_percent} %. Answers are saved to {session.shown_path()} after each one."))
        if session.settings.exam_file.is_file():
            exam_file = session.settings.exam_file.relative_to(course.root)
            console.print(
                f"You also have an exam in {exam_file}; answer it with\n  uv run course quiz --exam {exam_file}",
                style="yellow",
                markup=False,
            )
        console.print(f"You have answered {answered} of {len(session.bank)}. Options are shuffled for you "
                      f"(seed {seed or 'none: the bank order'}).", style="dim", markup=False)
        if not todo:
            console.print("Nothing left to ask here; to be asked again:\n  uv run course quiz --redo", style="dim",
                          markup=False)
        try:
            for question in todo:
                def save(value: Raw, qid: str = question.id) -> None:
                    save_answer(session.settings, session.path, qid, value, session.order)

                outcome = _ask(console, question, option_order(seed, question.id, len(question.options)),
                               position[question.id], len(session.bank), session.sheet().answers.get(question.id), save)
                if outcome == "quit":
                    console.print(f"Saved in {session.shown_path()}. To continue where you left off:\n"
                                  "  uv run course quiz", markup=False)
                    return 0
        except (KeyboardInterrupt, EOFError) as exc:
            console.print(f"\nStopped. Every answer you confirmed is saved in {session.shown_path()}. To continue:\n"
                          "  uv run course quiz", markup=False)
            return 130 if isinstance(exc, KeyboardInterrupt) else 0
    sheet = session.sheet()
    verdicts = grade_sheet(session.bank, session.key, sheet, sheet.effective_seed(session.settings),
                           only=[q.id for q in questions])
    console.print(review_view(verdicts, session.settings, session.shown_path()))
    if sheet.exists and not lesson:
        from checker.student.progress import record

        result = grade_lesson(course, session.settings.lesson, "starter")
        if not result.error:
            record(course.state_dir, result)
    return 0


def take_exam(course: Course, console: Console, source: Path, lesson: str | None = None, redo: bool = False) -> int:
    """`course quiz --exam FILE`: ask the exam's questions, saving each answer; no review (no key here)."""
    settings = load_settings(course)
    exam, kept = install_exam(settings, source)
    answers = settings.exam_answers
    where = _relative(answers, course)
    items = list(exam.items)
    if lesson:
        wanted = course.lesson(lesson).number
        items = [item for item in items if item.question.lesson == wanted]
        if not items:
            raise QuizError(f"the exam has no questions about lesson {wanted}")
    sheet = load_exam_sheet(answers)
    if sheet.exists and sheet.signature not in (None, exam.signature):
        raise QuizError(f"{where} holds answers to a different exam; move it away before answering this one")
    position = {item.question.id: i + 1 for i, item in enumerate(exam.items)}
    todo = [item for item in items if redo or not sheet.answered(item.question.id)]
    console.print(Text.assemble(("Exam ", "bold"), (exam.name, "bold"), f" for {exam.student} — {len(exam.items)} "
                                f"questions, {exam.points} points. Answers are saved to {where} after each one."))
    console.print(f"You have answered {sum(sheet.answered(i.question.id) for i in exam.items)} of {len(exam.items)}. "
                  f"Your instructor grades the exam; nothing here can tell you the score.", style="dim", markup=False)
    try:
        for item in todo:
            def save(value: Raw, qid: str = item.question.id) -> None:
                save_exam_answer(exam, answers, qid, value)

            outcome = _ask(console, item.question, item.order, position[item.question.id], len(exam.items),
                           load_exam_sheet(answers).answers.get(item.question.id), save)
            if outcome == "quit":
                break
    except (KeyboardInterrupt, EOFError) as exc:
        console.print(f"\nStopped. Every answer you confirmed is saved in {where}.", markup=False)
        if isinstance(exc, KeyboardInterrupt):
            return 130
    sheet = load_exam_sheet(answers)
    missing = [item.question.id for item in exam.items if not sheet.answered(item.question.id)]
    console.print(f"{len(exam.items) - len(missing)} of {len(exam.items)} answered"
                  + (f"; not yet: {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}" if missing else "")
                  + f". Hand in {_relative(kept, course)} and {where} with your work. To continue:\n"
                  f"  uv run course quiz --exam {_relative(kept, course)}", markup=False)
    return 0


def _relative(path: Path, course: Course) -> str:
    try:
        return str(path.resolve().relative_to(course.root.resolve()))
    except ValueError:
        return str(path)
