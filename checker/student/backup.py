"""Timestamped backups of student files, taken before the runner overwrites anything.

The promise: no command loses a line of a student's work. Whatever is about to be replaced
is copied first to `.course/backups/<timestamp>-<reason>/`, keeping its relative path.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path


def backup_files(paths: list[Path], base: Path, state_dir: Path, reason: str) -> Path | None:
    """Copy each existing file in `paths` (all under `base`); return the backup folder, if any."""
    existing = [p for p in paths if p.is_file()]
    if not existing:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = state_dir / "backups" / f"{stamp}-{reason}"
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = state_dir / "backups" / f"{stamp}-{reason}-{suffix}"
    for path in existing:
        dest = folder / path.relative_to(base)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return folder
