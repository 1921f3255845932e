"""Imports go one way: app/ and continuity/ -> projects/ -> storage/ and pipelines/ (docs/ARCHITECTURE.md).

Read from the source with ``ast``, so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# For each layer, the top-level modules its code may not import.
FORBIDDEN = {
    "storage": {"app", "continuity", "projects", "pipelines", "torch", "diffusers", "transformers", "gradio"},
    "pipelines": {"app", "continuity", "projects", "storage", "sqlalchemy", "alembic", "gradio"},
    "projects": {"app", "continuity", "gradio"},
    "app": {"continuity", "sqlalchemy", "alembic", "diffusers", "transformers"},
    # The Python API reaches models and data through projects/ alone; it starts the page (app.server) as the
    # command line does, and nothing else of app/.
    "continuity": {"pipelines", "storage", "torch", "sqlalchemy", "alembic", "diffusers", "transformers", "gradio"},
}
APP_MODULES_THE_API_STARTS = {"app.exposure", "app.server"}
# Where the project's own code lives: its packages, the scripts at the top, tests and benchmarks.
SOURCE_FOLDERS = ("app", "continuity", "projects", "pipelines", "storage", "tests", "bench")


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_downward(layer: str) -> None:
    files = [p for p in (ROOT / layer).rglob("*.py") if "migrations" not in p.parts]
    assert files
    wrong = {str(p.relative_to(ROOT)): sorted(imported(p) & FORBIDDEN[layer]) for p in files}
    assert {path: names for path, names in wrong.items() if names} == {}


def test_the_check_sees_imports() -> None:
    sample = ROOT / "projects" / "studio.py"
    assert {"sqlalchemy", "projects", "storage"} <= imported(sample)


def test_the_python_api_uses_nothing_of_the_page_but_starting_it() -> None:
    used = set()
    for path in (ROOT / "continuity").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("app"):
                used.add(node.module)
            elif isinstance(node, ast.Import):
                used |= {alias.name for alias in node.names if alias.name.startswith("app")}
    assert used <= APP_MODULES_THE_API_STARTS, used


def own_modules() -> set[str]:
    """The top-level names the project's code is imported by: its packages and scripts, and the helpers that
    tests and benchmarks import from their own folders."""
    names = {p.stem for p in ROOT.glob("*.py")} | {p.parent.name for p in ROOT.glob("*/__init__.py")}
    for folder in ("tests", "bench"):
        names |= {p.stem for p in (ROOT / folder).glob("*.py")}
    return names


def private_imports(source: str, own: set[str]) -> list[str]:
    """``module.name`` for each underscore-prefixed name ``source`` imports from a module of the project."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").split(".")[0] in own):
            module = "." * node.level + (node.module or "")
            found += [f"{module}.{alias.name}" for alias in node.names if _is_private(alias.name)]
        elif isinstance(node, ast.Import):
            found += [
                alias.name
                for alias in node.names
                if alias.name.split(".")[0] in own and any(_is_private(part) for part in alias.name.split("."))
            ]
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_imports_another_modules_private_names() -> None:
    """What modules share is public in its home module; a leading underscore means "only here"."""
    own = own_modules()
    files = [path for folder in SOURCE_FOLDERS for path in (ROOT / folder).rglob("*.py")]
    files += list(ROOT.glob("*.py"))
    found = {str(p.relative_to(ROOT)): private_imports(p.read_text(encoding="utf-8"), own) for p in files}
    assert {path: names for path, names in found.items() if names} == {}


def test_the_check_sees_private_imports() -> None:
    own = own_modules()
    assert {"app", "projects", "pipelines", "storage", "continuity", "probes"} <= own
    source = (
        "from pipelines.video import VideoError, _start\n"
        "from .records import _row\n"
        "import projects._hidden\n"
        "from diffusers.hooks import _private\n"
        "from projects import __version__\n"
    )
    assert private_imports(source, own) == ["pipelines.video._start", ".records._row", "projects._hidden"]


LONG_MODULE = 500  # lines


def test_a_long_module_says_at_its_top_why_it_is_long() -> None:
    unexplained = []
    for folder in ("app", "continuity", "projects", "pipelines", "storage"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if text.count("\n") <= LONG_MODULE:
                continue
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "500 lines" not in doc and "longer than" not in doc:
                unexplained.append(str(path.relative_to(ROOT)))
    assert unexplained == []
