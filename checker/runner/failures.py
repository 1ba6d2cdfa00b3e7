"""How a failure is told to a student: the one exception that explains it, in a line or two.

Used on both sides of the isolation boundary: by the worker, which judges, and by the host
process, which runs student code and must not import pytest. pytest's own outcomes (a check's
`pytest.fail` or `pytest.skip`) are recognised by the module that defines them, not imported.
"""

from __future__ import annotations

import os

_PYTEST_OUTCOMES = "_pytest.outcomes"


def _is_check_outcome(exc: BaseException) -> bool:
    """A check's own verdict: a failed assertion, `pytest.fail` or `pytest.skip`."""
    return isinstance(exc, AssertionError) or type(exc).__module__ == _PYTEST_OUTCOMES


def leaf_exception(exc: BaseException) -> BaseException:
    """The exception that explains `exc`, looking inside (nested) exception groups.

    anyio wraps errors from task groups (every MCP client) in groups. A check's own failure
    (an assertion, pytest.fail or pytest.skip) wins over whatever else broke alongside it;
    otherwise the first error found.
    """
    leaves: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop(0)
        if isinstance(current, BaseExceptionGroup):
            stack[:0] = list(current.exceptions)
        else:
            leaves.append(current)
    own = [e for e in leaves if _is_check_outcome(e)]
    return (own or leaves or [exc])[0]


def _student_location(exc: BaseException, edition: str) -> str:
    """`research_desk/context.py:42` for the deepest frame in the graded package, if any."""
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(edition):
            where = f"{os.path.relpath(filename, edition)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def describe_failure(exc: BaseException, edition: str) -> str:
    """One or two plain lines a student can act on."""
    exc = leaf_exception(exc)
    remote = getattr(exc, "remote_described", None)
    if isinstance(remote, str) and remote:
        return remote  # raised in the process hosting student code, and described there
    if isinstance(exc, AssertionError):
        text = str(exc).strip()
        return text or "an assertion failed without a message (a bug in the check: please report it)"
    if type(exc).__module__ == _PYTEST_OUTCOMES:
        return str(getattr(exc, "msg", exc))
    name = type(exc).__name__
    where = _student_location(exc, edition)
    text = f"{name}: {exc}" if str(exc) else name
    if isinstance(exc, NotImplementedError):
        text = f"not written yet ({text})"
    return f"{text}  [{where}]" if where else text
