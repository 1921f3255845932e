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
