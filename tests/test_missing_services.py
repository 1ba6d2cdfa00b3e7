"""A check that needs a system service the student lacks is skipped with install advice, never
failed (DESIGN decision 7). Lesson 6 is run with nginx and redis-server hidden from PATH."""

from __future__ import annotations

import pytest

from checker.runner.lesson import run_lesson
from tests.conftest import COURSE

SERVICE_CHECKS = ["nginx_sticky_legacy_sessions", "redis_bus_fan_out", "redis_bus_across_replicas"]


def test_service_checks_skip_with_install_advice(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no nginx, no redis-server
    result = run_lesson(COURSE, COURSE.lesson("lesson-6"), "solutions", select=SERVICE_CHECKS)
    assert not result.error, result.error
    outcomes = {c.id: (c.outcome, c.message) for c in result.checks}
    assert all(outcome == "skipped" for outcome, _ in outcomes.values()), outcomes
    assert all("install" in message for _, message in outcomes.values()), outcomes
    assert result.ok, "skipped checks must not fail the lesson"
