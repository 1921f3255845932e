"""The notebooks, run top to bottom in a real Jupyter kernel (nbclient) as a user runs them.

``quickstart.ipynb`` runs as shipped. ``rented_gpu.ipynb`` runs with its settings cell followed by one that
points it at this machine (this checkout as the clone, the tiny SANA-WM folder as the weights, no public link), the
way papermill injects parameters; every other cell is the shipped one, so its install (with pip kept off the
network), its render and its bundle are real.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import opentimelineio as otio
import probes
import pytest
from nbclient import NotebookClient
from probes import free_port

from projects import bundles, cast, project, render_queue, storyboard, takes
from projects.studio import open_studio
from storage.media import file_sha256

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
WIDGET = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.slow


def run_notebook(path: Path, inject: str | None = None) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    if inject is not None:
        at = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
        notebook.cells.insert(at + 1, nbformat.v4.new_code_cell(inject, metadata={"tags": ["injected-parameters"]}))
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def text_of(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for output in outputs(notebook):
        parts.append(output.get("text", ""))
        parts.extend(str(value) for value in output.get("data", {}).values())
    return "\n".join(parts)


def ffprobe_seconds(path: Path) -> float:
    seen = probes.ffprobe(path, "format=duration:stream=codec_type")
    assert [stream["codec_type"] for stream in seen["streams"]] == ["video"]
    return float(seen["format"]["duration"])


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the kernel inherits: nothing may reach the network, and one thread per library on this small machine."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("CONTINUITY_MODELS", raising=False)


def test_notebooks_are_valid_and_shipped_without_outputs() -> None:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code, path.name
        assert all(not cell.outputs and cell.execution_count is None for cell in code), f"{path.name} has outputs"
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == {"quickstart.ipynb", "rented_gpu.ipynb"}


def test_quickstart_runs_the_whole_workflow(tmp_path: Path, kernel_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("CONTINUITY_DATA", str(data))
    notebook = run_notebook(NOTEBOOKS / "quickstart.ipynb")

    # Rendering drew its progress bar as a Jupyter widget, and a take played inline (embedded in the notebook).
    assert any(WIDGET in output.get("data", {}) for output in outputs(notebook))
    assert "data:video/mp4;base64," in text_of(notebook)

    studio = open_studio(data)
    try:
        status = project.project_status(studio, "Quickstart")
        assert status.shot_count == 3 and status.missing_approval == ()
        assert [c.name for c in cast.list_characters(studio, "Quickstart")] == ["Mara"]
        shots = storyboard.list_shots(studio, "Quickstart").items
        assert shots[2].continue_from_previous and not shots[2].stale
        # The chained shot's approved take started from the approved take of the shot before it.
        approved = {t.shot_number: t for t in takes.list_takes(studio, "Quickstart").items if t.approved}
        assert approved[3].provenance["source_take_id"] == approved[2].id

        exported = data / "exports" / "Quickstart"
        (film,) = exported.glob("*.mp4")
        (timeline,) = exported.glob("*.otio")
        assert len(list(exported.glob("*-storyboard.png"))) == 1
        # Three shots of 2 + 1.5 + 1.5 s with title cards, less a quarter second per crossfade.
        assert ffprobe_seconds(film) > 5.0
        clips = [c for c in otio.adapters.read_from_file(str(timeline)).find_clips() if c.media_reference]
        linked = [c for c in clips if isinstance(c.media_reference, otio.schema.ExternalReference)]
        assert len(linked) == 3

        bundle = data / "quickstart.zip"
        elsewhere = open_studio(tmp_path / "elsewhere")
        try:
            restored = bundles.unpack_bundle(elsewhere, bundle)
            assert restored.counts.shots == 3 and restored.counts.takes == 3
            moved = takes.list_takes(elsewhere, restored.project_id).items
            assert {t.video_sha256 for t in moved} == {t.video_sha256 for t in approved.values()}
            assert all(file_sha256(t.video_path) == t.video_sha256 for t in moved)
        finally:
            elsewhere.close()
    finally:
        studio.close()


def test_rented_gpu_notebook_renders_a_bundle_and_packs_the_takes_to_merge_home(
    tmp_path: Path, kernel_env: None, photos: dict[str, Path], sana_wm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    home = open_studio(tmp_path / "home")
    try:
        project.create_project(home, "Harbour", width=64, height=64, fps=8)
        storyboard.add_shot(
            home, "Harbour", prompt="boats at dawn", duration=1.0, camera="dolly-in", keyframe=photos["coffee"]
        )
        packed = bundles.pack_project(home, "Harbour", tmp_path / "harbour.zip", takes="none")
        assert packed.counts.takes == 0

        port = free_port()
        rented = tmp_path / "rented"
        settings = "\n".join(
            [
                f"REPO = {str(ROOT)!r}",
                "INSTALL = True",  # the clone is this checkout; everything is installed, and pip may not reach out
                f"BUNDLE = {str(packed.path)!r}",
                "BACKEND = 'sana-wm'",
                f"WEIGHTS = {str(sana_wm_folder)!r}",
                "STEPS = 2",
                "TAKES = 2",
                "SHARE = False",
                f"PORT = {port}",
                "AUTH = 'studio:not-secret-in-tests'",
                f"DATA = {str(rented)!r}",
                "RESULTS = 'harbour-rendered.zip'",
            ]
        )
        notebook = run_notebook(NOTEBOOKS / "rented_gpu.ipynb", inject=settings)
        shown = text_of(notebook)
        assert f"studio page: http://127.0.0.1:{port}" in shown
        assert "password: not-secret-in-tests" in shown
        assert (rented / "models" / "sana-wm").resolve() == sana_wm_folder.resolve()

        # Home again: merging the results adds the two takes rendered there, and only once.
        results = rented / "harbour-rendered.zip"
        merged = bundles.merge_bundle(home, results)
        assert (merged.takes_added, merged.takes_already_there) == (2, 0)
        assert bundles.merge_bundle(home, results).takes_added == 0
        made = takes.list_takes(home, "Harbour").items
        assert [(t.backend, t.status, t.num_frames) for t in made] == [("sana-wm", "done", 9)] * 2
        assert all(file_sha256(t.video_path) == t.video_sha256 for t in made)
        assert all(t.params["generation"]["steps"] == 2 for t in made)
        assert render_queue.list_jobs(home, "Harbour") == []  # the takes came home; their jobs stayed there
    finally:
        home.close()
