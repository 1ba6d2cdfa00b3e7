"""Helpers for tests/test_quiz.py: run a quiz snippet, build a throwaway course root, answer as a student.

Snippets are written like notebook cells (top-level `await`), so they are compiled with
PyCF_ALLOW_TOP_LEVEL_AWAIT and awaited under anyio, with stdout captured. They run in-memory
only: no sockets, no network.
"""

from __future__ import annotations

import ast
import contextlib
import io
import shutil
import warnings
from pathlib import Path

import anyio
from mcp import MCPDeprecationWarning

from checker.quiz.answers import option_order
from checker.quiz.bank import Question
from checker.quiz.keys import PlainAnswer
from tests.conftest import pristine_project

SNIPPET_TIMEOUT = 15


def run_snippet(code: str, name: str) -> str:
    """Run `code` as a notebook cell would and return what it printed.

    Deprecation warnings are ignored, as in a student's notebook (where they are shown, not
    raised); the course's own pytest setting would turn them into errors inside the tools.
    """
    compiled = compile(code, f"<quiz snippet {name}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, object] = {"__name__": f"quiz_{name.replace('-', '_')}"}
    out = io.StringIO()

    async def main() -> None:
        with anyio.fail_after(SNIPPET_TIMEOUT):
            awaitable = eval(compiled, namespace)  # noqa: S307 - the course's own, reviewed snippets
            if awaitable is not None:
                await awaitable

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        with contextlib.redirect_stdout(out):
            anyio.run(main)
    return out.getvalue()


def output_lines(text: str) -> list[str]:
    """Printed output compared line by line, trailing spaces and blank edges ignored."""
    return [line.rstrip() for line in text.strip().splitlines()]


def make_root(source: Path, dest: Path, *, plain_key: bool = False, reference: bool = False) -> Path:
    """A course root for one test: the registry and the quiz's student edition (no plain key unless
    asked), with the starter package (as shipped) linked in."""
    (dest / "quiz").mkdir(parents=True)
    shutil.copy(source / "course.toml", dest / "course.toml")
    for name in ("bank.toml", "key.hashed.toml") + (("key.toml",) if plain_key else ()):
        shutil.copy(source / "quiz" / name, dest / "quiz" / name)
    if reference:
        (dest / "solutions").mkdir()
        shutil.copy(source / "solutions" / "quiz-answers.toml", dest / "solutions" / "quiz-answers.toml")
    (dest / "capstone").symlink_to(pristine_project(), target_is_directory=True)
    (dest / "lessons").symlink_to(source / "lessons", target_is_directory=True)
    return dest


def displayed(question: Question, canonical: list[str], seed: str) -> list[str]:
    """The letters a student with `seed` sees for the bank's letters `canonical`."""
    order = option_order(seed, question.id, len(question.options))
    position = {canonical_index: shown for shown, canonical_index in enumerate(order)}
    return sorted(question.letters[position[question.letters.index(letter)]] for letter in canonical)


def right_answer(question: Question, plain: PlainAnswer, seed: str) -> str:
    """What a student who knows the answer types: displayed letters, or the first accepted form."""
    if question.is_choice:
        return " ".join(displayed(question, list(plain.correct), seed))
    return plain.shown


def wrong_answer(question: Question, plain: PlainAnswer, seed: str) -> str:
    if question.is_choice:
        wrong = next(letter for letter in question.letters if letter not in plain.correct)
        return " ".join(displayed(question, [wrong], seed))
    return next(iter(plain.wrong), "certainly-not-it")
