"""Continuity installs as a package: a wheel built from the sources (offline) carries the code and the database
migrations, and ``import continuity`` works from anywhere once it is installed."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("app", "continuity", "pipelines", "projects", "storage", "pyproject.toml", "requirements.txt", "README.md")

pytestmark = pytest.mark.slow


def test_wheel_carries_the_code_and_migrations_and_installs(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    built = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(built), "."],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (wheel,) = built.glob("continuity-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = {p.name for p in (ROOT / "storage" / "migrations" / "versions").glob("*.py")}
    assert {f"storage/migrations/versions/{name}" for name in migrations} <= names
    assert {"storage/migrations/env.py", "storage/migrations/script.py.mako", "continuity/__init__.py"} <= names
    published = {f"pipelines/published/{p.name}" for p in (ROOT / "pipelines" / "published").glob("*.json")}
    assert published and published <= names  # the memory planner's published configs
    assert not any(name.startswith(("tests/", "bench/", "notebooks/")) for name in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines() if line.startswith("Req")]
    assert "Requires-Dist: torch==2.13.0" in requires and any("gradio" in line for line in requires)

    # Installed into a fresh environment whose dependencies are this one's, used from another folder. This
    # interpreter may itself run in a venv, whose packages ``venv --system-site-packages`` would not see (it
    # sees the base interpreter's): a .pth file names this environment's package folders instead.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    (venv_site,) = (venv / "lib").glob("python*/site-packages")
    (venv_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import continuity, sys\n"
        "studio = continuity.open('data')\n"
        "film = studio.create_project('Packaged', width=64, height=64, fps=8)\n"
        "print(continuity.__file__)\n"
        "print(film.name)\n"
        "studio.close()\n"
    )
    result = subprocess.run([str(python), "-c", script], cwd=elsewhere, check=True, capture_output=True, text=True)
    where, name = result.stdout.split()
    assert Path(where).is_relative_to(venv) and name == "Packaged"
    assert (elsewhere / "data" / "continuity.db").is_file()
