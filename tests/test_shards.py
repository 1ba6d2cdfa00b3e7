"""Grading beyond one machine: N shards graded as separate processes and merged give exactly the
unsharded gradebook; a merge refuses shards that do not make one class; the deploy/grading/ examples
are valid for their engines and hand each shard the right slice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import COURSE
from tests.test_gradebook import ENV, _student, course

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

DEPLOY = COURSE.root / "deploy" / "grading"
SHARDS = 3


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class graded once whole and once as SHARDS shards, each its own `course grade` process, merged."""
    root = tmp_path_factory.mktemp("shards")
    subs = root / "subs"
    for name, solved in (("ada", True), ("bob", False), ("cy", True), ("dee", False), ("eve", True)):
        _student(subs / name, solved=solved)
    (subs / "no-package").mkdir()
    with zipfile.ZipFile(subs / "fay.zip", "w") as archive:
        archive.writestr("readme.txt", "I forgot the code")
    whole = course("grade", subs, "--lessons", "1", "--out", root / "whole", "--jobs", 2)
    assert whole.returncode == 1, whole.stderr[-2000:]  # two submissions cannot be graded: said by exit code 1
    shards = [subprocess.Popen([sys.executable, "-m", "checker.cli.app", "grade", str(subs), "--lessons", "1",
                                "--shard", f"{i}/{SHARDS}", "--out", str(root / f"shard-{i}"), "--jobs", "1"],
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for i in range(1, SHARDS + 1)]
    for shard in shards:
        _, stderr = shard.communicate(timeout=600)
        assert shard.returncode in (0, 1), stderr[-2000:]
    merged = course("grade", "merge", *(root / f"shard-{i}" for i in range(1, SHARDS + 1)), "--out", root / "merged")
    assert merged.returncode == 0, merged.stderr[-2000:]
    return root


def _outcomes(folder: Path) -> dict[str, object]:
    """Each student's error and each check's outcome and points (what grading decided, not how long it took)."""
    data = json.loads((folder / "results.json").read_text())
    return {sub["id"]: (sub["error"], [(l["lesson"], [(c["id"], c["outcome"], c["points"]) for c in l["checks"]])
                                       for l in sub["lessons"]]) for sub in data["submissions"]}


def test_merged_shards_equal_the_unsharded_run(graded: Path) -> None:
    for name in ("gradebook.csv", "lms.csv"):
        assert (graded / "merged" / name).read_bytes() == (graded / "whole" / name).read_bytes(), name
    assert _outcomes(graded / "merged") == _outcomes(graded / "whole")
    assert sorted(p.name for p in (graded / "merged" / "feedback").iterdir()) == \
        sorted(p.name for p in (graded / "whole" / "feedback").iterdir())
    slices = [json.loads((graded / f"shard-{i}" / "shard.json").read_text())["students"] for i in range(1, SHARDS + 1)]
    assert sorted(sum(slices, [])) == sorted(_outcomes(graded / "whole")), "the shards cover the class once"
    assert max(map(len, slices)) - min(map(len, slices)) <= 1, "the shards are balanced"
    sandbox = json.loads((graded / "merged" / "results.json").read_text())["sandbox"]
    assert [entry["shard"] for entry in sandbox["shards"]] == list(range(1, SHARDS + 1))
    assert sandbox["mode"] == json.loads((graded / "whole" / "results.json").read_text())["sandbox"]["mode"]


def test_a_merge_refuses_shards_that_do_not_make_one_class(graded: Path, tmp_path: Path) -> None:
    shards = [graded / f"shard-{i}" for i in range(1, SHARDS + 1)]
    copy = tmp_path / "copy-of-shard-1"
    shutil.copytree(shards[0], copy)
    partial = tmp_path / "interrupted-shard-2"
    shutil.copytree(shards[1], partial)
    next((partial / "store").glob("*.json")).unlink()
    cases = {
        "missing": (shards[:2], f"shard {SHARDS}/{SHARDS} is missing"),
        "twice": ([shards[0], *shards], "is given twice"),
        "same shard": ([copy, *shards], "are both shard 1/3"),
        "unfinished": ([shards[0], partial, shards[2]], f"shard 2/{SHARDS} in {partial} has not finished"),
        "not a shard": ([graded / "whole", *shards[1:]], "is not a shard's output"),
    }
    for name, (folders, message) in cases.items():
        done = course("grade", "merge", *folders, "--out", tmp_path / name)
        assert done.returncode == 2 and message in done.stderr, f"{name}: {done.stderr}"
    other = tmp_path / "other-class"
    _student(other / "zed")
    stranger = course("grade", other, "--lessons", "1", "--shard", f"1/{SHARDS}", "--out", tmp_path / "stranger")
    assert stranger.returncode == 0, stranger.stderr[-1000:]
    done = course("grade", "merge", tmp_path / "stranger", *shards[1:], "--out", tmp_path / "mixed")
    assert done.returncode == 2 and "shards of different runs" in done.stderr, done.stderr
    bad = course("grade", graded / "whole", "--shard", "4/3")
    assert bad.returncode == 2 and "1 <= I <= N" in bad.stderr


# ---------------------------------------------------------------- the engines' examples

def _shard_args(text: str) -> str:
    found = re.search(r"--shard\s+(\S+)", text)
    assert found, "the example passes --shard"
    return found.group(1)


def test_kubernetes_indexed_job_gives_each_pod_its_own_shard() -> None:
    (job,) = yaml.safe_load_all((DEPLOY / "kubernetes-indexed-job.yaml").read_text())
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    spec = job["spec"]
    count = spec["completions"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == count
    (container,) = spec["template"]["spec"]["containers"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/submissions", "/grades"} <= mounts
    script = container["args"][0].replace("exec uv run --frozen course", "echo course")
    seen = []
    for index in range(count):  # what each pod runs, with the index Kubernetes gives it
        done = subprocess.run([*container["command"], script], env={"JOB_COMPLETION_INDEX": str(index), "PATH": os.defpath},
                              capture_output=True, text=True, check=True)
        seen.append((_shard_args(done.stdout), re.search(r"--out (\S+)", done.stdout).group(1)))  # type: ignore[union-attr]
    assert seen == [(f"{i}/{count}", f"/grades/shard-{i}") for i in range(1, count + 1)]
    (merge,) = yaml.safe_load_all((DEPLOY / "kubernetes-merge-job.yaml").read_text())
    args = merge["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert re.findall(r"/grades/shard-(\d+)", args) == [str(i) for i in range(1, count + 1)] and "merge" in args


def test_slurm_array_gives_each_task_its_own_shard(tmp_path: Path) -> None:
    script = (DEPLOY / "slurm-array.sbatch").read_text()
    for name in ("slurm-array.sbatch", "slurm-merge.sbatch"):
        assert subprocess.run(["bash", "-n", str(DEPLOY / name)]).returncode == 0, name
    first, last = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", script).groups())  # type: ignore[union-attr]
    assert first == 1
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "uv").write_text("#!/bin/sh\necho \"$@\"\n")
    (shim / "uv").chmod(0o755)
    seen = []
    for task in range(first, last + 1):  # what each array task runs, with the variables Slurm sets
        env = {"PATH": f"{shim}:{os.defpath}", "SLURM_SUBMIT_DIR": str(tmp_path), "SLURM_ARRAY_TASK_ID": str(task),
               "SLURM_ARRAY_TASK_COUNT": str(last), "SLURM_CPUS_PER_TASK": "2"}
        done = subprocess.run(["bash", str(DEPLOY / "slurm-array.sbatch")], env=env, capture_output=True, text=True,
                              check=True)
        seen.append(_shard_args(done.stdout))
    assert seen == [f"{i}/{last}" for i in range(1, last + 1)]
    assert "course grade merge grades/shard-*" in (DEPLOY / "slurm-merge.sbatch").read_text()


def test_github_actions_matrix_is_a_valid_workflow_that_shards_and_merges() -> None:
    path = DEPLOY / "github-actions-matrix.yml"
    schema = subprocess.run([str(Path(sys.executable).with_name("check-jsonschema")), "--builtin-schema",
                             "vendor.github-workflows", str(path)], capture_output=True, text=True)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    workflow = yaml.safe_load(path.read_text())
    grade, merge = workflow["jobs"]["grade"], workflow["jobs"]["merge"]
    shards = grade["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, len(shards) + 1)) and grade["strategy"]["fail-fast"] is False
    run = next(step["run"] for step in grade["steps"] if "course grade" in step.get("run", ""))
    assert '--shard "${{ matrix.shard }}/${{ strategy.job-total }}"' in run
    assert merge["needs"] == "grade" and any("course grade merge shards/shard-*" in step.get("run", "")
                                             for step in merge["steps"])
