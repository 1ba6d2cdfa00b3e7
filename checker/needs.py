"""Notebook cells that need the student's code say so in one line, not with a traceback.

Every lesson's first cell loads this (`%load_ext checker.needs`). The lessons run the student's
package live, so until an exercise is written a cell that uses it fails: with the starter's
`NotImplementedError("TODO(lesson-3): write update")`, often deep inside an MCP client's task
group, sometimes in a server subprocess (its stderr quoted in another error), sometimes as a
failed tool call that the cell only trips over a line later. Whichever, the student reads one line:
which TODO, in which file, and what to do next.

Later cells must not cascade either. A cell that stopped at a TODO leaves the names it would have
set unset or half-made, so a later cell that fails while reading one of them gets the same line
("an earlier cell stopped there") instead of a NameError. A cell that runs cleanly clears the
names it sets. Any other failure shows IPython's usual traceback: it is a real error.

Student work that cannot raise by itself (a constant left empty, a TOML table not written) is
asked for explicitly: the extension puts `needs(value, lesson, what)` in the notebook's namespace.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TODO = re.compile(r"TODO\((lesson-\d+)\): write ([A-Za-z_][\w ]*\w|\w)")  # the starter's NotImplementedError
RED, BOLD, RESET = "\x1b[31m", "\x1b[1m", "\x1b[0m"


@dataclass(frozen=True)
class Todo:
    """An exercise not written yet: `TODO(lesson-3): write update`, and the file it is in if known."""

    lesson: str
    function: str
    file: str = ""

    def where(self) -> str:
        """`research_desk/progress.py`: the file of the package this kernel imports that raises this
        TODO (found by its text), or that defines the name."""
        if self.file:
            return self.file
        package = _package()
        spec = importlib.util.find_spec(package) if package else None
        folders = list(spec.submodule_search_locations or []) if spec else []
        raised = f"TODO({self.lesson}): write {self.function}"
        name = re.escape(self.function)
        defined = re.compile(rf"^(?:(?:async\s+)?def|class)\s+{name}\b|^{name}\s*[:=]", re.MULTILINE)
        sources = [(path, folder) for folder in folders for path in sorted(Path(folder).rglob("*.py"))]
        for test in (lambda text: raised in text, lambda text: bool(defined.search(text))):
            for path, folder in sources:
                try:
                    if test(path.read_text(encoding="utf-8", errors="replace")):
                        return f"{package}/{path.relative_to(folder).as_posix()}"
                except OSError:
                    continue
        return f"your {package or 'server'} package"

    def message(self, earlier: bool = False) -> str:
        """The one line a student reads."""
        head = f"This cell needs your code: TODO({self.lesson}) in {self.where()} ({self.function})"
        if earlier:
            return f"{head}, where an earlier cell stopped. Write it, then re-run from that cell."
        return f"{head}. Write it, then re-run this cell."


class NotWritten(NotImplementedError):
    """Raised by `needs()`: what a cell needs is not in the student's code yet."""

    def __init__(self, todo: Todo) -> None:
        super().__init__(f"TODO({todo.lesson}): write {todo.function}")
        self.todo = todo


def needs(ready: object, lesson: str, what: str, where: str = "") -> None:
    """In a cell, for student work that cannot raise by itself (a constant, a TOML table): stop
    with the one-line message unless `ready` is true.

        needs(tool.annotations, "lesson-7", "ANNOTATIONS")
        needs(command.exists(), "lesson-8", "the research-desk script", where="pyproject.toml")
    """
    if not ready:
        raise NotWritten(Todo(lesson, what, where))


def _package() -> str:
    """The server package's name, from course.toml (empty if the notebook is outside the course)."""
    from checker.registry import CourseError, load_course

    try:
        return load_course().package
    except (CourseError, OSError):
        return ""


def find_todo(exc: BaseException | None) -> Todo | None:
    """The unwritten exercise behind `exc`: in it, in an exception group, or in what caused it."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NotWritten):
            return current.todo
        try:
            found = TODO.search(str(current))
        except Exception:  # noqa: BLE001 - a broken __str__ hides nothing we need
            found = None
        if found:
            return Todo(found[1], found[2])
        if isinstance(current, BaseExceptionGroup):
            stack.extend(reversed(current.exceptions))
        stack += [current.__context__, current.__cause__]
    return None


def names_in(source: str) -> tuple[set[str], set[str], set[str]]:
    """What a cell's code does with names: every name it sets at the top level, the ones it sets
    by computing a value (assignments, loop and `with` targets: what a failed cell leaves unset or
    half-made; not imports or definitions, which cannot fail on a missing exercise), and every
    name it reads anywhere."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(), set(), set()
    stored: set[str] = set()
    computed: set[str] = set()
    loaded: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loaded.add(node.id)
            elif top:
                stored.add(node.id)
                computed.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and top:
            stored.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and top:
            stored.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        inner = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
                                                ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, True)
    return stored, computed, loaded


class _Recorder(logging.Handler):
    """Remembers unwritten exercises that a server logged instead of raising (a failed tool call)."""

    def __init__(self, needs: Needs) -> None:
        super().__init__(logging.ERROR)
        self.needs = needs

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        todo = find_todo(exc)
        if todo is not None:
            self.needs.swallowed.append(todo)


class Needs:
    """The state of one kernel: the cell running now, and which names wait for which TODO."""

    LOGGERS = ("", "uvicorn")  # where servers running in the kernel log a crashed call (uvicorn's do not propagate)

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.waiting: dict[str, tuple[int, Todo]] = {}  # name -> (when, the TODO the cell setting it stopped at)
        self.failures = 0                               # cells stopped at a TODO so far: the "when" above
        self.swallowed: list[Todo] = []                 # TODOs logged (not raised) while the current cell runs
        self.stored: set[str] = set()                   # of the cell running now: every name it sets,
        self.computed: set[str] = set()                 # the ones it computes (see names_in),
        self.loaded: set[str] = set()                   # and every name it reads
        self.recorder = _Recorder(self)

    # IPython hooks ---------------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        self.swallowed = []
        try:
            source = self.shell.transform_cell(info.raw_cell or "")
        except Exception:  # noqa: BLE001 - a cell IPython cannot transform fails on its own
            source = ""
        self.stored, self.computed, self.loaded = names_in(source)

    def post_run_cell(self, result: Any) -> None:
        if result.error_in_exec is None and result.error_before_exec is None:
            for name in self.stored:
                self.waiting.pop(name, None)
            if self.swallowed:  # it ran, but what it made came from a failed call
                self._wait(self.swallowed[-1])

    def on_error(self, shell: Any, etype: type[BaseException], value: BaseException, tb: Any,
                 tb_offset: int | None = None) -> None:
        """IPython's custom exception handler: one line for a missing exercise, else the usual."""
        todo, earlier = self.explain(value)
        if todo is None:
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
            return
        self._wait(todo)
        shell._showtraceback(etype, value, [f"{RED}{BOLD}{todo.message(earlier)}{RESET}"])  # noqa: SLF001

    # the decision ----------------------------------------------------------------------------
    def explain(self, exc: BaseException) -> tuple[Todo | None, bool]:
        """The TODO this failure comes from, and whether an earlier cell (not this one) hit it."""
        todo = find_todo(exc)
        if todo is not None:
            return todo, False
        if self.swallowed:
            return self.swallowed[-1], False
        missing = self._missing_name(exc)
        if missing is not None:
            return (self.waiting[missing][1], True) if missing in self.waiting else (None, False)
        used = [self.waiting[name] for name in self.loaded if name in self.waiting]
        if used:
            return max(used, key=lambda entry: entry[0])[1], True  # the latest cell that stopped
        return None, False

    @staticmethod
    def _missing_name(exc: BaseException) -> str | None:
        """The name a NameError (here or inside an exception group) could not find."""
        stack = [exc]
        while stack:
            current = stack.pop()
            if isinstance(current, NameError) and getattr(current, "name", None):
                return str(current.name)
            if isinstance(current, BaseExceptionGroup):
                stack.extend(current.exceptions)
        return None

    def _wait(self, todo: Todo) -> None:
        """The names the cell computes, and any it never reached, now wait for `todo`."""
        self.failures += 1
        namespace = self.shell.user_ns
        for name in self.computed | {name for name in self.stored if name not in namespace}:
            self.waiting[name] = (self.failures, todo)


_state: Needs | None = None


def load_ipython_extension(shell: Any) -> None:
    """`%load_ext checker.needs`: install the hooks once per kernel (loading twice is harmless)."""
    global _state
    if _state is not None:
        return
    _state = Needs(shell)
    shell.push({"needs": needs})
    shell.events.register("pre_run_cell", _state.pre_run_cell)
    shell.events.register("post_run_cell", _state.post_run_cell)
    shell.set_custom_exc((Exception,), _state.on_error)
    for name in Needs.LOGGERS:
        logging.getLogger(name).addHandler(_state.recorder)


def unload_ipython_extension(shell: Any) -> None:
    global _state
    if _state is None:
        return
    shell.events.unregister("pre_run_cell", _state.pre_run_cell)
    shell.events.unregister("post_run_cell", _state.post_run_cell)
    shell.set_custom_exc((), None)
    for name in Needs.LOGGERS:
        logging.getLogger(name).removeHandler(_state.recorder)
    _state = None
