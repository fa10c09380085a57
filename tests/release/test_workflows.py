""".github/workflows/: actionlint (built by scripts/setup/actionlint.sh, with Debian's shellcheck
for the `run:` scripts) accepts the workflow files, and still catches each kind of mistake in a
broken copy of them; the CI job runs the README's test command with what it needs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.servers.process import cache_dir, pinned_version
from tests.servers.require import server_missing

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
SETUP = ROOT / "scripts" / "setup" / "actionlint.sh"


def actionlint(files: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    version = pinned_version(SETUP, r"^version=(\S+)$")
    tool = cache_dir() / f"actionlint-{version}" / "actionlint"
    if not tool.exists():
        server_missing(f"{tool} is missing: run scripts/setup/actionlint.sh")
    if shutil.which("shellcheck") is None:
        server_missing("shellcheck is missing (actionlint skips run: scripts without it)")
    return subprocess.run(
        [str(tool), "-no-color", "-oneline", *(str(f.relative_to(cwd)) for f in files)],
        capture_output=True, text=True, timeout=60, check=False, cwd=cwd,
    )  # fmt: skip


def workflow_files(root: Path) -> list[Path]:
    return sorted((root / ".github" / "workflows").glob("*.yml"))


def test_actionlint_accepts_every_workflow():
    files = workflow_files(ROOT)
    assert {f.name for f in files} >= {"ci.yml", "build.yml", "release.yml"}
    result = actionlint(files, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# (file, text in it, what replaces it, what actionlint must name in its report)
MISTAKES = {
    "unknown action input": ("ci.yml", "java-version:", "java-versoin:", "java-versoin"),
    "timeout not a number": ("ci.yml", "timeout-minutes: 90", "timeout-minutes: ninety", "ci.yml:"),
    "shell script fault": ("ci.yml", "run: .ci/run", "run: cd $HOME/x && .ci/run", "SC2086"),
    "untrusted input in a script": (
        "build.yml", "python -m build --outdir dist .",
        'python -m build --outdir dist . && echo "${{ github.event.head_commit.message }}"',
        "potentially untrusted",
    ),
    "missing reusable workflow": ("release.yml", "build.yml", "bulid.yml", "bulid.yml"),
}  # fmt: skip


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_actionlint_reports_a_broken_copy(tmp_path, mistake):
    name, text, broken, named = MISTAKES[mistake]
    shutil.copytree(WORKFLOWS, tmp_path / ".github" / "workflows")
    (tmp_path / ".git").mkdir()  # actionlint reads local reusable workflows inside a repository
    target = tmp_path / ".github" / "workflows" / name
    source = target.read_text()
    assert text in source, f"{name} no longer holds {text!r}: update this test"
    target.write_text(source.replace(text, broken, 1))
    result = actionlint(workflow_files(tmp_path), tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = result.stdout.splitlines()
    assert any(
        line.startswith(f".github/workflows/{name}:") and named in line for line in errors
    ), result.stdout


def test_ci_job_runs_the_readme_test_command_on_every_push():
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    assert set(ci[True]) >= {"push", "pull_request"}  # YAML 1.1 reads the key `on` as True
    test = ci["jobs"]["test"]
    assert test["timeout-minutes"] <= 90
    runs = [step["run"] for step in test["steps"] if "run" in step]
    assert ".ci/run" in runs
    readme = (ROOT / "README.md").read_text()
    assert "CI (`.ci/run`) runs `scripts/test.sh`" in readme
    cached = next(s["with"]["path"] for s in test["steps"] if "actions/cache" in s.get("uses", ""))
    assert "~/.cache/tickpipe" in cached.split()


def test_every_action_is_pinned_to_a_version():
    for path in workflow_files(ROOT):
        for uses in re.findall(r"uses:\s*(\S+)", path.read_text()):
            if uses.startswith("./"):
                assert (ROOT / uses).exists(), f"{path.name}: {uses} does not exist"
            else:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", uses), f"{path.name}: {uses}"
