"""Grading a class on several machines: a deterministic slice per shard, and the merge of their stores.

The course does not schedule anything: an engine that already does (a Kubernetes Indexed Job, a
Slurm job array, a GitHub Actions matrix; examples in deploy/grading/) starts one
`course grade SUBMISSIONS --shard I/N --out shard-I/` per index, each on the same submissions.
Shard I takes every N-th submission by student id, starting with the I-th, so the shards are
disjoint, cover the class and stay balanced. Each writes `shard.json` beside its store, and
`course grade merge shard-*/ --out grades/` checks that the shards belong together (same class,
same lessons, all of them there, finished, no student twice) before combining their records into
one store, from which the exports are rebuilt as after an unsharded run (the same gradebook;
only timings differ).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from checker.grading.record import SubmissionResult
from checker.grading.store import STORE_DIR, GradeStore
from checker.grading.submissions import Submission
from checker.registry import CourseError

SHARD_FILE = "shard.json"


def parse_shard(spec: str) -> tuple[int, int]:
    """`"2/4"` -> (2, 4): shard 2 of 4, counted from 1 (as --shard in Playwright and Jest)."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not found or not 1 <= int(found.group(1)) <= int(found.group(2)):
        raise CourseError(f"--shard {spec!r}: give I/N with 1 <= I <= N, e.g. --shard 1/4")
    return int(found.group(1)), int(found.group(2))


def shard_of(submissions: list[Submission], index: int, count: int) -> list[Submission]:
    """Shard `index` of `count`: every `count`-th submission by student id, from the `index`-th."""
    ordered = sorted(submissions, key=lambda submission: submission.id)
    return [submission for position, submission in enumerate(ordered) if position % count == index - 1]


def class_digest(submissions: list[Submission]) -> str:
    """Which class a shard was cut from: shards of different submission folders must not be merged."""
    return hashlib.sha256("\n".join(sorted(s.id for s in submissions)).encode("utf-8")).hexdigest()[:16]


@dataclass
class Manifest:
    """What a shard's `shard.json` says about it."""

    shard: int
    of: int
    digest: str  # of the whole class's student ids (`class_digest`)
    submissions: int  # in the whole class
    students: list[str]  # this shard's
    lessons: list[str]
    sandbox: dict[str, object]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def write_manifest(out: Path, index: int, count: int, everyone: list[Submission], mine: list[Submission],
                   lessons: list[str], sandbox: dict[str, object]) -> None:
    manifest = Manifest(index, count, class_digest(everyone), len(everyone), sorted(s.id for s in mine), lessons,
                        sandbox)
    (out / SHARD_FILE).write_text(json.dumps(manifest.to_json(), indent=1), encoding="utf-8")


def read_manifest(folder: Path) -> Manifest:
    try:
        data = json.loads((folder / SHARD_FILE).read_text(encoding="utf-8"))
        return Manifest(
            int(data["shard"]),
            int(data["of"]),
            str(data["digest"]),
            int(data["submissions"]),
            [str(s) for s in data["students"]],
            [str(lesson) for lesson in data["lessons"]],
            dict(data["sandbox"]),
        )
    except FileNotFoundError:
        raise CourseError(
            f"{folder} is not a shard's output (no {SHARD_FILE}): grade it with "
            f"`course grade SUBMISSIONS --shard I/N --out {folder}`"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise CourseError(f"{folder / SHARD_FILE} is damaged: grade that shard again") from None


def merge_shards(folders: list[Path]) -> tuple[list[SubmissionResult], dict[str, object]]:
    """Every record of the shards in `folders`, checked to make one whole class; and the sandbox block.

    Raises CourseError (one line, naming the folders involved) when shards are missing, repeated,
    unfinished, cut from different submission folders or graded for different lessons, or when a
    student turns up in two shards.
    """
    if not folders:
        raise CourseError("give the shards' output folders to merge")
    repeated = next((folder for i, folder in enumerate(folders) if folder.resolve() in
                     {other.resolve() for other in folders[:i]}), None)
    if repeated is not None:
        raise CourseError(f"{repeated} is given twice")
    manifests = {folder: read_manifest(folder) for folder in folders}
    first_folder, first = next(iter(manifests.items()))
    by_index: dict[int, Path] = {}
    for folder, manifest in manifests.items():
        if (manifest.of, manifest.digest) != (first.of, first.digest):
            raise CourseError(f"{folder} and {first_folder} are shards of different runs (shard {manifest.shard}/"
                              f"{manifest.of} of {manifest.submissions} submissions vs {first.shard}/{first.of} of "
                              f"{first.submissions}): grade every shard from the same submissions folder")
        if manifest.lessons != first.lessons:
            raise CourseError(f"{folder} graded {','.join(manifest.lessons)} but {first_folder} graded "
                              f"{','.join(first.lessons)}: grade every shard with the same --lessons")
        if manifest.shard in by_index:
            raise CourseError(f"{by_index[manifest.shard]} and {folder} are both shard {manifest.shard}/{manifest.of}")
        by_index[manifest.shard] = folder
    missing = [f"{i}/{first.of}" for i in range(1, first.of + 1) if i not in by_index]
    if missing:
        raise CourseError(f"shard {', '.join(missing)} is missing: merge the output folders of all {first.of} shards")
    records: dict[str, tuple[Path, SubmissionResult]] = {}
    for index in sorted(by_index):
        folder, manifest = by_index[index], manifests[by_index[index]]
        stored = {record.id: record for record in GradeStore(folder / STORE_DIR).records()}
        unfinished = [
            student
            for student in manifest.students
            if student not in stored
            or (not stored[student].error and not all(stored[student].has(lesson) for lesson in manifest.lessons))
        ]
        if unfinished:
            raise CourseError(
                f"shard {index}/{first.of} in {folder} has not finished: {len(unfinished)} of its students "
                f"are not graded (first: {unfinished[0]}); resume it with --resume"
            )
        for student in manifest.students:
            if student in records:
                raise CourseError(f"student {student!r} is in both {records[student][0]} and {folder}")
            records[student] = (folder, stored[student])
    modes = sorted({str(m.sandbox.get("mode", "")) for m in manifests.values()})
    sandbox: dict[str, object] = {
        "mode": modes[0] if len(modes) == 1 else "mixed",
        "shards": [{"shard": index, "folder": str(by_index[index]), **manifests[by_index[index]].sandbox}
                   for index in sorted(by_index)]}
    return sorted((record for _, record in records.values()), key=lambda record: record.id), sandbox
