"""Lesson 3, instructor-only checks: the visible requirements again, with inputs the student never saw.

Left out of the student release and run by `course grade`. Each re-tests what a visible check
already enforces (an empty workspace indexes to zero, the bar's boundaries, logging once beside
a root handler with the level of the latest call) with other files, sizes and levels, in both
protocol eras, so hard-coding the visible cases loses these points and understanding does not.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import text_of, word
from checker.checks.support.lesson03 import Recorder, redirected_output
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

@check("a workspace without documents indexes to zero, in both protocol eras", points=1,
       hint="No documents is not an error: the total is 0, there is nothing to report progress about, and the "
            "summary counts zero documents and zero words. Watch for a division by the total or a first/last "
            "document that does not exist.")
async def test_index_empty_workspace(target: Target, tmp_path: Path) -> None:
    rng = random.Random()
    root = tmp_path / f"empty-{word(rng)}"
    root.mkdir()
    # Files an indexer must skip, so the folder is not literally empty: hidden ones and non-text ones.
    skipped = [f".{word(rng)}/{word(rng)}.md", f".{word(rng)}.txt", f"{word(rng)}.{rng.choice(['png', 'pdf', 'csv'])}"]
    for name in skipped:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {word(rng)}\n{word(rng)} {word(rng)}")
    progress = target.module("progress")
    for mode in MODES:
        recorder = Recorder()
        async with target.client(progress.create_server(root), mode=mode) as client:
            result = await client.call_tool("index_documents", {}, progress_callback=recorder)
        era = "a modern client" if mode == "auto" else "a legacy client"
        if result.is_error:
            crash = target.tool_crash()
            pytest.fail(f"with {era}, indexing a workspace holding only {skipped} (no documents) failed: "
                        f"{crash or text_of(result)}; an empty workspace is a valid one")
        summary = result.structured_content
        assert isinstance(summary, dict), f"with {era}: index_documents must return an IndexSummary"
        got = (summary.get("documents"), summary.get("words"), summary.get("titles"))
        assert got == (0, 0, {}), (
            f"with {era}, a workspace with no documents (only {skipped}, which are skipped) gave "
            f"documents={got[0]!r}, words={got[1]!r}, titles={got[2]!r}; expected 0, 0 and no titles")
        claimed = [u for u in recorder.updates if u.progress > 0 or u.total not in (0, None)]
        assert not claimed, (
            f"with {era}, indexing no documents reported progress {claimed[0].progress:g} of {claimed[0].total!r}; "
            "with nothing to do, no report may claim work done or a total other than 0")


BarCase = tuple[int, float, int, str]
"""One notification for a fresh bar: (width, progress, total, message)."""


def _bar_edges(target: Target, progress_bar: Any, cases: list[BarCase]) -> list[list[Any]]:
    """A fresh bar per case takes one notification: what update returned, and the text (or the
    exception that text() or update() raised)."""
    seen: list[list[Any]] = []
    for width, done, total, message in cases:
        bar = progress_bar("edge", width=width, stream=target.library("io").StringIO())
        try:
            taken = bar.update(done, total, message)
            seen.append([taken, bar.text(), ""])
        except Exception as exc:  # noqa: BLE001 - the crash is the finding, reported as data
            seen.append([None, "", f"{type(exc).__name__}: {exc}"])
    return seen


@check("ProgressBar copes with progress past the total, a total of 0 and fractional progress", points=1,
       hint="Progress is a float and comes from a server you do not control. The bar never has more than "
            "`width` cells, a total of 0 gives no fraction to draw (and nothing to divide by), and numbers "
            "are written with :g, so 2.5 stays 2.5.")
async def test_progress_bar_boundaries(target: Target) -> None:
    progress_bar = target.attr("progress", "ProgressBar")
    rng = random.Random()
    total = rng.randint(3, 40)
    over: BarCase = (rng.randint(10, 40), total + rng.randint(1, 20), total, f"past {word(rng)}")
    zero: BarCase = (rng.randint(10, 40), rng.randint(1, 20), 0, f"zero {word(rng)}")
    while True:  # a half step whose exact cell count is never a float-rounding edge
        width, part_total = rng.randint(10, 40), rng.randint(4, 40)
        halves = rng.randint(1, 2 * part_total - 2) | 1
        if (width * halves) % (2 * part_total):
            break
    part: BarCase = (width, halves / 2, part_total, f"half {word(rng)}")
    seen = _bar_edges(target, progress_bar, [over, zero, part])

    for (_, done, total, message), (taken, text, crash) in zip([over, zero, part], seen, strict=True):
        assert not crash, f"ProgressBar crashed on update({done:g}, {total:g}, {message!r}) then text(): {crash}"
        assert taken is True, f"a fresh bar should take update({done:g}, {total:g}, ...), but it returned {taken!r}"
        assert message in text, f"the bar text {text!r} should contain the message {message!r}"

    (width, done, total, _), (_, text, _) = over, seen[0]
    assert text.count("█") == width and "░" not in text, (
        f"{done:g} of {total:g} (past the total) on a bar {width} cells wide should show {width} full cells and "
        f"no empty ones, but the text is {text!r}: the done part can never be more than the whole bar")
    assert f"{done:g}/{total:g}" in text, f"the bar text {text!r} should still show the count {done:g}/{total:g}"

    (_, done, _, _), (_, text, _) = zero, seen[1]
    assert "█" not in text and "░" not in text, (
        f"with a total of 0 there is no fraction to draw, but the text is {text!r}; treat it like an unknown total")
    assert f"{done:g}" in text, f"with a total of 0, the text {text!r} should still show the count {done:g}"

    (width, done, total, _), (_, text, _) = part, seen[2]
    full = math.floor(Fraction(int(done * 2), 2) * width / total)
    assert text.count("█") == full and text.count("░") == width - full, (
        f"{done:g} of {total:g} on a bar {width} cells wide should show {full} full and {width - full} empty "
        f"cells (rounded down), but the text is {text!r}")
    assert f"{done:g}/{total:g}" in text, (
        f"fractional progress should be written as {done:g}/{total:g} (the :g format), but the text is {text!r}")


def _log_beside_root_handler(target: Target, progress: Any, levels: list[str], token: str) -> dict[str, Any]:
    """Where the student's code runs, the root logger already prints to stderr (as after MCPServer(...));
    call configure_logging once per level in `levels`, then log a DEBUG and an INFO line carrying
    `token`. Returns what reached stdout and stderr, and whether the package logger came back.
    Every logger touched is restored afterwards."""
    returned: list[bool] = []
    with redirected_output(target) as (logging_, out, err):
        root, package = logging_.getLogger(), logging_.getLogger("research_desk")
        already = logging_.StreamHandler(err)
        already.setFormatter(logging_.Formatter("ROOT %(levelname)s %(name)s: %(message)s"))
        root.handlers = [already]
        root.setLevel(logging_.WARNING)
        package.handlers, package.propagate = [], True  # as in a fresh process
        for level in levels:
            returned.append(progress.configure_logging(level) is package)
        logger = logging_.getLogger("research_desk.progress")
        logger.debug("%s-debug", token)
        logger.info("%s-info", token)
    return {"out": out.getvalue(), "err": err.getvalue(), "returned": returned}


@check("configure_logging: each line once beside a root handler, and a second call can change the level",
       points=1,
       hint="MCPServer puts a handler on the root logger, and records of the package logger travel up to it "
            "too unless you stop them, so every line would be printed twice. Calling configure_logging again "
            "must not add a handler, but it should still apply the level it is given; it returns the package "
            "logger.")
async def test_logging_once_beside_root_handler(target: Target) -> None:
    progress = target.module("progress")
    token = f"lesson3-hidden-{random.randint(10_000, 99_999)}"
    first = random.choice(["WARNING", "ERROR"])
    seen = _log_beside_root_handler(target, progress, [first, "DEBUG"], token)
    out, err = seen["out"], seen["err"]
    assert token not in out, "a log record reached stdout: on the stdio transport that is the protocol stream"
    for suffix, level in (("info", "INFO"), ("debug", "DEBUG")):
        lines = [line for line in err.splitlines() if f"{token}-{suffix}" in line]
        assert lines, (f"after configure_logging({first!r}) then configure_logging('DEBUG'), the {level} record "
                       f"of research_desk.progress did not reach stderr; the second call should apply its level")
        assert len(lines) == 1, (
            f"the {level} record was written {len(lines)} times to stderr ({lines}); the root logger already "
            "had a handler (as MCPServer installs one), and the package's records reached it as well as yours")
    assert seen["returned"] == [True, True], (
        f"configure_logging should return the package logger logging.getLogger('research_desk'); "
        f"per call that held: {seen['returned']}")
