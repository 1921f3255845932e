"""A new user's main path through the studio in a real browser: Debian's Chromium, headless, driven by
Playwright. A screenshot of each panel is kept under ``test-artifacts/`` (CI keeps them; git ignores them)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_ui_client import ROOT, start_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[object, Path]]:
    from playwright.sync_api import sync_playwright

    data = tmp_path / "data"
    process, url = start_app(data)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.goto(url)
            tab.wait_for_selector("#create-project", timeout=60_000)
            yield tab, data
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=20)


def shoot(tab: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def no_error(tab: object) -> None:
    """Fails when the page shows an error message (Gradio's error toast)."""
    errors = tab.locator(".toast-body.error, .toast-wrap .error")
    if errors.count():
        raise AssertionError(f"the page shows an error: {errors.first.inner_text()}")
    if "Error rendering" in tab.locator("body").inner_text():
        raise AssertionError("a custom HTML component failed to render (its template)")


def edit_cell(tab: object, elem_id: str, row: int, column: int, text: str) -> None:
    """Type ``text`` into a cell of a Gradio table as a user does: double-click it, replace what is there, Enter."""
    cell = tab.locator(f"#{elem_id} .virtual-row[role=row]").nth(row).locator("[role=gridcell]").nth(column)
    cell.dblclick()
    editor = cell.locator("textarea, input").first
    editor.wait_for(timeout=5_000)
    editor.press("Control+A")
    editor.type(text)
    editor.press("Enter")
    tab.wait_for_timeout(300)


def open_tab(tab: object, title: str) -> None:
    tab.get_by_role("tab", name=title).click()
    time.sleep(0.3)


def fill(tab: object, elem_id: str, text: str) -> None:
    field = tab.locator(f"#{elem_id} textarea, #{elem_id} input").first
    field.fill(text)


def test_a_new_user_makes_a_film(page: tuple[object, Path], photos: dict[str, Path]) -> None:
    tab, data = page
    shoot(tab, "1-projects-empty")
    fill(tab, "new-project-name", "Gull Rock")
    tab.locator("#create-project").click()
    tab.get_by_text(re.compile(r"Gull Rock\*\*|Gull Rock: 0 shots|Gull Rock")).first.wait_for(timeout=15_000)
    tab.locator("#current-project").get_by_text("Gull Rock").wait_for(timeout=15_000)
    no_error(tab)
    shoot(tab, "2-projects")

    open_tab(tab, "Cast")
    fill(tab, "character-name", "Mara")
    fill(tab, "character-description", "an astronaut in an orange suit")
    tab.locator("#refs input[type=file]").set_input_files(str(photos["astronaut"]))
    tab.wait_for_timeout(1000)
    # Every word on the page is a word, not a translation key Gradio's own strings lack ("common.upload" on the
    # file box's upload button once a file is in it).
    assert tab.locator('#refs [aria-label="Upload"]').count() >= 1
    assert not tab.locator('[aria-label^="common."], [title^="common."]').count()
    tab.locator("#add-character").click()
    tab.locator("#character-references img").first.wait_for(timeout=15_000)
    no_error(tab)
    shoot(tab, "3-cast")

    open_tab(tab, "Storyboard")
    for title, prompt in (("Arrival", "Mara looks up"), ("Tea", "Mara drinks tea")):
        fill(tab, "shot-title", title)
        fill(tab, "shot-prompt", prompt)
        fill(tab, "shot-duration", "1")
        tab.locator("#add-shot").click()
        tab.locator("#storyboard-list").get_by_text(title).last.wait_for(timeout=15_000)
    no_error(tab)
    shoot(tab, "4-storyboard")

    open_tab(tab, "Queue")
    tab.locator("#render-all").click()
    # The queue's cards follow the render by themselves: both takes done, nothing waiting.
    tab.wait_for_function(
        "() => /\\b0 running\\b.*\\b0 queued\\b.*\\b2 done/s"
        ".test(document.querySelector('#queue-totals')?.innerText || '')",
        timeout=60_000,
    )
    assert tab.locator("#queue-cards .job .state.done").count() == 2
    assert tab.locator("#queue-cards .job img").count() == 2  # each with its take's picture, served to the page
    tab.wait_for_function(
        "() => [...document.querySelectorAll('#queue-cards .job img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=15_000,
    )
    no_error(tab)
    shoot(tab, "5-queue")

    open_tab(tab, "Storyboard")
    fill(tab, "shot-number", "1")
    tab.locator("#open-shot").click()
    tab.locator("#selected-shot").get_by_text("Shot 1 selected").wait_for(timeout=15_000)
    tab.locator("#storyboard-grid .thumbnail-item").nth(1).click()  # a picture in the grid opens its shot
    tab.locator("#selected-shot").get_by_text("Shot 2 selected").wait_for(timeout=15_000)
    tab.locator("#storyboard-grid .thumbnail-item").nth(0).click()
    tab.locator("#selected-shot").get_by_text("Shot 1 selected").wait_for(timeout=15_000)
    no_error(tab)
    open_tab(tab, "Takes")
    tab.locator("#takes-table").get_by_text("done").last.wait_for(timeout=15_000)
    tab.locator("#compare #compare-take-1 video").wait_for(timeout=15_000)
    tab.locator("#compare #compare-take-1 [data-action=approve]").click()
    # The message is in the page's stack of notices; on a busy machine the stack may be folded by then.
    tab.get_by_text("Approved take 1 of shot 1").wait_for(state="attached", timeout=30_000)
    no_error(tab)
    shoot(tab, "6-takes")

    open_tab(tab, "Export")
    # The cut says in words what the export will carry: shot 2 has no approved take yet.
    tab.locator("#cut-warnings").get_by_text("Shot 2 has no approved take").wait_for(timeout=15_000)
    assert tab.locator("#cut .seg.missing").count() == 1
    tab.get_by_label("Shots without an approved take").click()
    tab.get_by_role("option", name="black placeholder").click()
    tab.locator("#run-export").click()
    tab.locator("#export-summary").get_by_text(".mp4").wait_for(timeout=60_000)
    tab.locator("#export-summary").get_by_text("Black placeholders where no take is approved: shots 2.").wait_for()
    tab.locator("#export-film video").wait_for(timeout=15_000)
    no_error(tab)
    shoot(tab, "7-export")

    open_tab(tab, "Settings")
    tab.locator("#backends-table").get_by_text("animatic").last.wait_for(timeout=15_000)
    tab.locator("#plan-card").get_by_text("Plan for a card").click()
    tab.locator("#plan-card").get_by_label("With the refiner").check()
    tab.locator("#plan-card").get_by_role("button", name="Plan", exact=True).click()
    tab.locator("#plan-text").get_by_text("sana-wm on a 24.0 GiB card").wait_for(timeout=60_000)
    assert "refiner text_encoder" in tab.locator("#plan-text").inner_text()
    no_error(tab)
    shoot(tab, "8-settings")

    from projects import storyboard
    from projects.studio import open_studio

    studio = open_studio(data)
    try:
        shots = storyboard.list_shots(studio, "Gull Rock").items
        assert [s.title for s in shots] == ["Arrival", "Tea"]
        assert shots[0].approved_take_id is not None
    finally:
        studio.close()
    assert len(list(data.glob("exports/*/*.mp4"))) == 1


# Counts the frames Gradio's status tracker asks the browser for (installed before any script of the page's).
COUNT_TRACKER_FRAMES = """
(() => {
  const native = window.requestAnimationFrame;
  window.__trackerFrames = 0;
  window.requestAnimationFrame = function (callback) {
    if ((new Error().stack || "").includes("statustracker")) window.__trackerFrames += 1;
    return native.call(window, callback);
  };
})();
"""


def tracker_frames(tab: object, seconds: float) -> int:
    before = tab.evaluate("window.__trackerFrames")
    tab.wait_for_timeout(seconds * 1000)
    return tab.evaluate("window.__trackerFrames") - before


def test_an_idle_page_asks_the_browser_for_nothing(page: tuple[object, Path]) -> None:
    """Gradio's page-wide "Loading..." tracker leaves its timer's frame loop running after the page has loaded (60
    frames a second, forever); the studio's page stops it once no tracker is pending, and the timers of trackers
    that are pending still run."""
    tab, _data = page
    tab.add_init_script(COUNT_TRACKER_FRAMES)
    tab.reload()
    tab.wait_for_selector("#create-project", timeout=60_000)
    tab.wait_for_timeout(1500)
    assert tracker_frames(tab, 2) == 0
    fill(tab, "new-project-name", "Gull Rock")
    before = tab.evaluate("window.__trackerFrames")
    tab.locator("#create-project").click()
    tab.locator("#current-project").get_by_text("Gull Rock").wait_for(timeout=15_000)
    assert tab.evaluate("window.__trackerFrames") > before  # the pending event's timer ran
    tab.wait_for_timeout(1500)
    assert tracker_frames(tab, 2) == 0
    no_error(tab)


def test_a_refused_request_shows_a_readable_message(page: tuple[object, Path]) -> None:
    tab, _ = page
    fill(tab, "new-project-name", "a/b")
    tab.locator("#create-project").click()
    message = tab.locator(".toast-body")
    message.first.wait_for(timeout=15_000)
    text = message.first.inner_text()
    assert "must not contain" in text and "Traceback" not in text
    shoot(tab, "9-error-message")

    # A refused shot says why in a notice; the form's fields carry no "Error" badges and keep what was typed.
    open_tab(tab, "Storyboard")
    fill(tab, "shot-title", "Arrival")
    tab.locator("#add-shot").click()
    tab.get_by_text("Open or create a project first").first.wait_for(timeout=15_000)
    tab.wait_for_timeout(500)
    badges = tab.locator(".wrap span.error")
    assert not any(badges.nth(i).is_visible() for i in range(badges.count()))
    assert tab.locator("#shot-title textarea, #shot-title input").first.input_value() == "Arrival"


def test_a_page_opened_later_lists_the_projects_made_since_the_server_started(page: tuple[object, Path]) -> None:
    from projects.project import create_project
    from projects.studio import open_studio

    tab, data = page
    studio = open_studio(data)  # another front end (the command line, a notebook) adds a project meanwhile
    try:
        create_project(studio, "Made Elsewhere")
    finally:
        studio.close()
    tab.reload()
    tab.wait_for_selector("#create-project", timeout=60_000)
    tab.wait_for_function(
        "() => (document.querySelector('#projects')?.innerText || '').includes('Made Elsewhere')", timeout=15_000
    )
    no_error(tab)


def test_a_keyframe_that_is_not_a_picture_gets_a_message_and_adds_no_shot(
    page: tuple[object, Path], tmp_path: Path
) -> None:
    tab, data = page
    fill(tab, "new-project-name", "Gull Rock")
    tab.locator("#create-project").click()
    tab.locator("#current-project").get_by_text("Gull Rock").wait_for(timeout=15_000)
    open_tab(tab, "Storyboard")
    notes = tmp_path / "keyframe.png"
    notes.write_text("these are notes, not a picture")
    fill(tab, "shot-prompt", "Mara looks up")
    fill(tab, "shot-duration", "1")
    tab.locator("#shot-keyframe input[type=file]").set_input_files(str(notes))
    tab.wait_for_timeout(1000)
    tab.locator("#add-shot").click()
    message = tab.locator(".toast-body.error")
    message.first.wait_for(timeout=15_000)
    shoot(tab, "10-keyframe-not-a-picture")
    text = message.first.inner_text()
    assert "keyframe" in text and "Traceback" not in text, text

    from projects import storyboard
    from projects.studio import open_studio

    studio = open_studio(data)
    try:
        assert storyboard.list_shots(studio, "Gull Rock").total == 0
    finally:
        studio.close()


def test_keyframes_are_drawn_from_the_cast_and_approved_on_the_shot(page: tuple[object, Path]) -> None:
    tab, data = page
    fill(tab, "new-project-name", "Gull Rock")
    tab.locator("#create-project").click()
    tab.locator("#current-project").get_by_text("Gull Rock").wait_for(timeout=15_000)
    open_tab(tab, "Cast")
    fill(tab, "character-name", "Mara")
    fill(tab, "character-description", "a keeper in a dark suit")
    tab.locator("#refs input[type=file]").set_input_files(str(ROOT / "tests" / "photos" / "obama-1.jpg"))
    tab.wait_for_timeout(1000)
    tab.locator("#add-character").click()
    tab.locator("#character-references img").first.wait_for(timeout=15_000)

    open_tab(tab, "Storyboard")
    tab.locator("#refresh-storyboard").click()
    fill(tab, "shot-title", "Arrival")
    fill(tab, "shot-prompt", "Mara waits on the pier")
    fill(tab, "shot-duration", "1")
    tab.locator("#shot-characters").get_by_text("Mara").click()
    tab.locator("#add-shot").click()
    tab.locator("#selected-shot").get_by_text("Shot 1 selected").wait_for(timeout=15_000)
    fill(tab, "keyframe-count", "2")
    tab.locator("#draw-keyframes").click()
    tab.get_by_text("Queued 2 keyframe candidate(s) for shot 1").wait_for(timeout=15_000)
    # The candidates land while the page is open, with the Queue tab never shown: the section watches for them.
    tab.wait_for_function(
        "() => document.querySelectorAll('#keyframe-candidates .thumbnail-item').length >= 2",
        timeout=60_000,
    )
    tab.locator("#keyframe-candidates").get_by_text(re.compile("Mara 1.00 same person")).first.wait_for(timeout=15_000)
    no_error(tab)
    shoot(tab, "11-keyframe-candidates")
    tab.locator("#keyframe-candidates .thumbnail-item").nth(1).click()
    tab.locator("#keyframe-chosen").get_by_text("candidate 2").wait_for(timeout=15_000)
    tab.locator("#approve-keyframe").click()
    tab.get_by_text("Shot 1's keyframe is now candidate 2").wait_for(timeout=15_000)
    tab.locator("#keyframe-candidates").get_by_text("✓ approved").first.wait_for(timeout=15_000)
    tab.locator("#keyframe-status").get_by_text("approved: first frame candidate 2").wait_for(timeout=15_000)
    no_error(tab)
    shoot(tab, "12-keyframe-approved")

    from projects import keyframes, storyboard
    from projects.studio import open_studio

    studio = open_studio(data)
    try:
        shot = storyboard.shot_number(studio, "Gull Rock", 1)
        second = keyframes.list_keyframes(studio, "Gull Rock")[1]
        assert (shot.keyframe.source, shot.keyframe.sha256) == ("drawn", second.sha256)
    finally:
        studio.close()


def open_project(tab: object, name: str) -> None:
    field = tab.locator("#open-project input").first
    field.click()
    field.fill(name)
    tab.wait_for_timeout(300)
    field.press("ArrowDown")
    field.press("Enter")
    tab.locator("#current-project").get_by_text(name).wait_for(timeout=15_000)


def test_the_board_renders_opens_and_reorders_shots(page: tuple[object, Path]) -> None:
    from projects import storyboard
    from projects.project import create_project
    from projects.studio import open_studio

    tab, data = page
    studio = open_studio(data)
    try:
        create_project(studio, "Harbour", width=96, height=64, fps=8)
        for number in (1, 2, 3):
            storyboard.add_shot(studio, "Harbour", title=f"Pier {number}", prompt=f"beat {number}", duration=1.0)
    finally:
        studio.close()
    tab.reload()
    tab.wait_for_selector("#create-project", timeout=60_000)
    open_project(tab, "Harbour")
    tab.get_by_role("tab", name="Board", exact=True).click()
    board = tab.locator("#board")
    board.locator("#shot-card-3").wait_for(timeout=15_000)
    assert "3 missing" in board.locator("#board-totals").inner_text()

    # Render shot 2 from its card: its takes land on the card by themselves, with no reselecting.
    board.locator("#shot-card-2 [data-action=render]").click()
    board.locator("#shot-card-2").get_by_text("Takes (2)").wait_for(timeout=60_000)
    board.locator("#shot-card-2 .strip .take").nth(1).wait_for(timeout=60_000)
    tab.wait_for_function(
        "() => [...document.querySelectorAll('#shot-card-2 img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=15_000,
    )
    tab.wait_for_function(
        "() => /\\b0 queued\\b/.test(document.querySelector('#board-totals')?.innerText || '')", timeout=60_000
    )
    no_error(tab)
    shoot(tab, "13-board")

    # Its takes, compared: the newest on the left; approving the right-hand one marks it, and two more takes
    # rendered from here join the comparison as they land, with no reselecting.
    board.locator("#shot-card-2 .actions [data-action=takes]").click()
    compare = tab.locator("#compare")
    compare.locator(".cmp video").nth(1).wait_for(timeout=15_000)
    assert compare.locator(".cmp").nth(1).get_attribute("id") == "compare-take-1"
    compare.locator(".cmp").nth(1).locator("[data-action=approve]").click()
    compare.locator("#compare-take-1 .badge").get_by_text("approved").wait_for(timeout=15_000)
    fill(tab, "takes-count", "2")
    tab.locator("#render-takes").click()
    compare.locator(".cmp").nth(3).wait_for(timeout=60_000)
    assert sorted(compare.locator(".cmp").evaluate_all("(all) => all.map(f => f.id)")) == [
        f"compare-take-{n}" for n in (1, 2, 3, 4)
    ]
    compare.get_by_text("Play together").click()
    tab.wait_for_function(
        "() => [...document.querySelectorAll('#compare video')].every(v => !v.paused)", timeout=15_000
    )
    no_error(tab)
    shoot(tab, "14-compare")
    board = tab.locator("#board")
    tab.get_by_role("tab", name="Board", exact=True).click()

    # Edit opens the shot's own form in the Storyboard tab.
    board.locator("#shot-card-2 .actions [data-action=open]").click()
    tab.locator("#selected-shot").get_by_text("Shot 2 selected.").wait_for(timeout=15_000)
    tab.wait_for_function(
        "() => document.querySelector('#shot-title textarea, #shot-title input')?.value === 'Pier 2'", timeout=15_000
    )

    # Dragging shot 3 onto shot 1 moves it to the front.
    tab.get_by_role("tab", name="Board", exact=True).click()
    board.locator("#shot-card-3").drag_to(board.locator("#shot-card-1"))
    tab.wait_for_function(
        "() => (document.querySelector('#shot-card-1 .title')?.innerText || '') === 'Pier 3'", timeout=15_000
    )
    no_error(tab)
    studio = open_studio(data)
    try:
        assert [s.title for s in storyboard.all_shots(studio, "Harbour")] == ["Pier 3", "Pier 1", "Pier 2"]
    finally:
        studio.close()

    # Deleting asks first; "New shot" empties the form for a shot of its own.
    board.locator("#shot-card-1 .actions [data-action=open]").click()
    tab.locator("#selected-shot").get_by_text("Shot 1 selected.").wait_for(timeout=15_000)
    tab.locator("#delete-shot").click()
    tab.get_by_text("Tick 'Yes, delete the selected shot and its takes' to delete shot 1").wait_for(timeout=15_000)
    tab.locator(".toast-body.error .toast-close").first.click()  # the refusal was the point: dismiss it
    tab.locator("#confirm-delete-shot input").check()
    tab.locator("#delete-shot").click()
    tab.get_by_text("Deleted shot 1.").wait_for(state="attached", timeout=15_000)
    tab.locator("#new-shot").click()
    tab.locator("#selected-shot").get_by_text("New shot: fill in the form").wait_for(timeout=15_000)
    assert tab.locator("#shot-title textarea, #shot-title input").first.input_value() == ""
    no_error(tab)
    studio = open_studio(data)
    try:
        assert [s.title for s in storyboard.all_shots(studio, "Harbour")] == ["Pier 1", "Pier 2"]
    finally:
        studio.close()


def test_the_project_open_last_opens_again_on_the_next_visit(page: tuple[object, Path]) -> None:
    from projects.project import create_project
    from projects.studio import open_studio

    tab, data = page
    studio = open_studio(data)
    try:
        for name in ("Harbour", "Gull Rock"):
            create_project(studio, name)
    finally:
        studio.close()
    tab.reload()
    tab.wait_for_selector("#create-project", timeout=60_000)
    assert "No project open." in tab.locator("#current-project").inner_text()
    open_project(tab, "Gull Rock")
    tab.wait_for_timeout(500)  # the browser keeps it as the page's last project
    tab.reload()
    tab.wait_for_selector("#create-project", timeout=60_000)
    tab.locator("#current-project").get_by_text("Gull Rock").wait_for(timeout=15_000)
    no_error(tab)


def eight_shot_zip(folder: Path, photos: dict[str, Path]) -> Path:
    """The README's own layout, zipped: the storyboard beside its refs/ folder, two characters and eight shots."""
    import json
    import zipfile

    from PIL import Image

    refs = folder / "gull-rock" / "refs"
    refs.mkdir(parents=True)
    Image.open(photos["astronaut"]).save(refs / "mara.png")
    Image.open(photos["chelsea"]).save(refs / "gull.png")
    shots = [
        {
            "title": f"Beat {n}",
            "prompt": f"Mara on the rock, beat {n}",
            "characters": ["Mara"] if n % 2 else ["Mara", "Gull"],
            "duration": 1,
            "keyframe_character": "Mara",
            "continue_from_previous": n == 5,
        }
        for n in range(1, 9)
    ]
    for shot in shots:
        if shot["continue_from_previous"]:
            del shot["keyframe_character"]
    board = {
        "project": "Gull Rock",
        "settings": {"width": 128, "height": 80, "fps": 8},
        "characters": [
            {"name": "Mara", "description": "an astronaut", "references": ["refs/mara.png"]},
            {"name": "Gull", "description": "a cat on the rocks", "references": ["refs/gull.png"]},
        ],
        "shots": shots,
    }
    (folder / "gull-rock" / "storyboard.json").write_text(json.dumps(board))
    bundle = folder / "gull-rock.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for path in sorted((folder / "gull-rock").rglob("*")):
            archive.write(path, path.relative_to(folder))
    return bundle


def wait_until_rendered(tab: object) -> None:
    tab.wait_for_function(
        "() => /\\b0 rendering\\b.*\\b0 queued\\b/s.test(document.querySelector('#board-totals')?.innerText || '')",
        timeout=120_000,
    )


def test_a_filmmaker_cuts_an_eight_shot_film_from_the_board(
    page: tuple[object, Path], photos: dict[str, Path], tmp_path: Path
) -> None:
    """Import a zipped storyboard with its refs/, render from the board, compare four takes and approve the
    right-hand one, see a stale shot flagged after approving upstream, fix it, and export the film."""
    tab, _data = page
    tab.locator("#tab-projects").get_by_text("Import a storyboard").click()
    tab.locator("#storyboard-files input[type=file]").set_input_files(str(eight_shot_zip(tmp_path, photos)))
    tab.wait_for_timeout(1000)
    tab.locator("#import-storyboard").click()
    tab.locator("#current-project").get_by_text("8 shots, 2 characters").wait_for(timeout=30_000)
    no_error(tab)
    shoot(tab, "20-imported")

    tab.get_by_role("tab", name="Board", exact=True).click()
    board = tab.locator("#board")
    board.locator("#shot-card-8").wait_for(timeout=15_000)
    fill(tab, "board-count", "1")
    tab.locator("#board-render-all").click()
    wait_until_rendered(tab)
    fill(tab, "board-count", "3")
    board.locator("#shot-card-4 [data-action=render]").click()
    board.locator("#shot-card-4").get_by_text("Takes (4)").wait_for(timeout=30_000)
    wait_until_rendered(tab)
    no_error(tab)
    shoot(tab, "21-board-rendered")

    # Shot 4's four takes side by side: the right-hand one is approved.
    board.locator("#shot-card-4 .actions [data-action=takes]").click()
    compare = tab.locator("#compare")
    compare.locator(".cmp").nth(3).wait_for(timeout=15_000)
    right = compare.locator(".cmp").nth(3)
    right_id = right.get_attribute("id")
    right.locator("[data-action=approve]").click()
    compare.locator(f"#{right_id} .badge").get_by_text("approved").wait_for(timeout=15_000)
    tab.locator("#approve-best").click()  # the best take of every other shot
    tab.locator("#retake-report").get_by_text("Approved").wait_for(timeout=30_000)
    no_error(tab)
    shoot(tab, "22-compare-four")

    # Approving another take of shot 4 makes shot 5, which continues from it, stale on the board.
    other = compare.locator(".cmp:not(.approved)").first
    other.locator("[data-action=approve]").click()
    tab.wait_for_timeout(1000)
    tab.get_by_role("tab", name="Board", exact=True).click()
    board.locator("#shot-card-5.stale").wait_for(timeout=15_000)
    assert "continues from shot 4" in board.locator("#shot-card-5 .badge.stale").inner_text()
    shoot(tab, "23-stale")

    # Fixed by rendering what is stale and approving its new take.
    fill(tab, "board-count", "1")
    tab.locator("#board-render-needed").click()
    board.locator("#shot-card-5").get_by_text("Takes (2)").wait_for(timeout=60_000)
    wait_until_rendered(tab)
    board.locator("#shot-card-5 .actions [data-action=takes]").click()
    # The Takes tab shows shot 5 (its two takes), not the shot it showed before, before anything is approved.
    tab.wait_for_function(
        "() => (document.querySelector('#takes-heading')?.innerText || '').includes('Shot 5')"
        " && document.querySelectorAll('#compare .cmp').length === 2",
        timeout=30_000,
    )
    compare.locator("#compare-take-2 [data-action=approve]").click()
    compare.locator("#compare-take-2 .badge").get_by_text("approved").wait_for(timeout=15_000)
    tab.wait_for_timeout(1000)
    tab.get_by_role("tab", name="Board", exact=True).click()
    tab.wait_for_function("() => !document.querySelector('#shot-card-5.stale')", timeout=30_000)
    assert "0 stale" in board.locator("#board-totals").inner_text()
    no_error(tab)

    tab.get_by_role("tab", name="Export", exact=True).click()
    tab.locator("#cut-warnings").get_by_text("the cut is ready to export").wait_for(timeout=15_000)
    # Trim a cut: shot 8 ends half a second into its take, and a title card comes before it. The table saves
    # as it is typed, and the cut above shows the trim and the card.
    tab.locator("#cut-edits").get_by_text("Trims, crossfades and title cards").click()
    edit_cell(tab, "cut-edit-table", 7, 3, "0.5")
    edit_cell(tab, "cut-edit-table", 7, 5, "Night")
    tab.locator("#cut-card-8").get_by_text("Night").wait_for(timeout=15_000)
    tab.locator("#cut-shot-8.trimmed").wait_for(timeout=15_000)
    no_error(tab)
    shoot(tab, "24-trimmed")
    tab.locator("#run-export").click()
    tab.locator("#export-summary").get_by_text(".mp4").wait_for(timeout=60_000)
    assert ": 9.5 s," in tab.locator("#export-summary").inner_text()  # 8 s, less 0.5 s of shot 8, a 2 s card
    no_error(tab)
    shoot(tab, "25-exported")
