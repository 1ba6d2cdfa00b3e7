"""The given document scanner that lessons 1, 2, 3, 7 and 9 all serve from."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import COURSE


@pytest.fixture
def documents(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(COURSE.solutions))
    for name in [n for n in sys.modules if n.startswith(COURSE.package)]:
        monkeypatch.delitem(sys.modules, name)
    import research_desk.documents as module

    return module


def test_links_that_leave_the_workspace_are_not_documents(documents, tmp_path: Path) -> None:
    root = tmp_path / "workspace"
    (root / "notes").mkdir(parents=True)
    (tmp_path / "secret.md").write_text("# Secret\nnot for the model")
    (root / "notes" / "plan.md").write_text("# Plan")
    (root / "notes" / "alias.md").symlink_to(root / "notes" / "plan.md")   # inward: fine
    (root / "leak.md").symlink_to(tmp_path / "secret.md")                 # outward: never served
    (root / "outside").symlink_to(tmp_path)                               # a folder link out
    (root / ".hidden.md").write_text("hidden")
    found = [p.relative_to(root).as_posix() for p in documents.scan_documents(root)]
    assert found == ["notes/alias.md", "notes/plan.md"]


def test_title_and_word_count(documents, tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("\n\n## Findings  \nthree more words")
    doc = documents.load_document(tmp_path, tmp_path / "a.md")
    assert (doc.name, doc.title, doc.words) == ("a.md", "Findings", 5)
