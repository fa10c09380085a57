"""scripts/install.sh (what scripts/run.sh runs first): installs once, again only on a change.

A real bash, a real venv and a real pip, on a stand-in project whose build backend lives in
the project (no build requirements, so nothing is fetched) and counts its builds in a file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install.sh"
DEAD_INDEX = "http://127.0.0.1:9/simple"  # nothing listens on the discard port

PYPROJECT = """\
[build-system]
requires = []
build-backend = "countingbackend"
backend-path = ["."]

[project]
name = "fake-tickpipe"
version = "{version}"
"""

# A PEP 517 backend in 25 lines: a wheel with one `tickpipe` console script; each build adds
# a line to builds.log, so a test sees whether pip built (installed) the project again.
BACKEND = """\
import base64, hashlib, pathlib, re, zipfile

def _build(wheel_directory, *_args, **_kwargs):
    root = pathlib.Path(__file__).parent
    version = re.search(r'version = "(.*)"', (root / "pyproject.toml").read_text())[1]
    with open(root / "builds.log", "a") as log:
        log.write(version + "\\n")
    name, info = f"fake_tickpipe-{version}-py3-none-any.whl", f"fake_tickpipe-{version}.dist-info"
    files = {
        "fake_tickpipe.py": "def main():\\n    print('fake')\\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\\nName: fake-tickpipe\\nVersion: {version}\\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
        f"{info}/entry_points.txt": "[console_scripts]\\ntickpipe = fake_tickpipe:main\\n",
    }
    record = []
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / name, "w") as wheel:
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
            wheel.writestr(path, data)
        wheel.writestr(f"{info}/RECORD", "\\n".join([*record, f"{info}/RECORD,,"]) + "\\n")
    return name

build_wheel = build_editable = _build
"""


def project(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "scripts" / "install.sh")
    (root / "pyproject.toml").write_text(PYPROJECT.format(version="1.0"))
    (root / "countingbackend.py").write_text(BACKEND)
    return root


def install(root: Path, *args: str, index: str | None = None) -> subprocess.CompletedProcess:
    """scripts/install.sh as run.sh runs it; without `index` pip may not use any index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env.update(PYTHON=sys.executable, PIP_RETRIES="0", PIP_TIMEOUT="2")
    env.update({"PIP_INDEX_URL": index} if index else {"PIP_NO_INDEX": "1"})
    return subprocess.run(
        ["bash", str(root / "scripts" / "install.sh"), *args],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip


def builds(root: Path) -> list[str]:
    return (root / "builds.log").read_text().split()


def test_a_second_install_is_skipped_and_works_with_no_index_reachable(tmp_path: Path) -> None:
    root = project(tmp_path)
    first = install(root)
    assert first.returncode == 0, first.stderr
    assert (root / ".venv" / "bin" / "tickpipe").exists()
    assert builds(root) == ["1.0"]

    started = time.monotonic()
    second = install(root, index=DEAD_INDEX)
    took_s = time.monotonic() - started
    assert second.returncode == 0, second.stderr
    assert builds(root) == ["1.0"], "installed again although pyproject.toml did not change"
    assert took_s < 2, f"a skipped install took {took_s:.1f}s"


def test_a_changed_pyproject_or_a_new_extra_installs_again(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert install(root).returncode == 0
    (root / "pyproject.toml").write_text(PYPROJECT.format(version="2.0"))
    changed = install(root)
    assert changed.returncode == 0, changed.stderr
    assert builds(root) == ["1.0", "2.0"]
    with_extra = install(root, "test")  # the stand-in has no such extra: pip only warns
    assert with_extra.returncode == 0, with_extra.stderr
    assert builds(root) == ["1.0", "2.0", "2.0"]
    assert install(root).returncode == 0  # the install with the extra covers the plain one
    assert builds(root) == ["1.0", "2.0", "2.0"]
