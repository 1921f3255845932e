"""The shot form saves only what changed, can start a shot from a character's reference, and clears a picture
only when it was emptied (a real studio: SQLite file and media store)."""

from __future__ import annotations

from pathlib import Path

from app.panels.storyboard import changed_fields
from projects import cast, storyboard
from projects import project as projects
from projects.studio import Studio


def form(shot: storyboard.ShotInfo, **changes: object) -> dict[str, object]:
    values = {
        "title": shot.title,
        "scene": shot.scene,
        "duration": shot.duration,
        "camera": shot.camera,
        "prompt": shot.prompt,
        "characters": list(shot.characters),
        "continue_from_previous": shot.continue_from_previous,
        "last_frame_from_next": shot.last_frame_from_next,
    }
    return values | changes


def test_only_what_changed_is_saved(studio: Studio, photos: dict[str, Path]) -> None:
    projects.create_project(studio, "Harbour")
    cast.add_character(studio, "Harbour", "Mara", references=[photos["astronaut"]])
    shot = storyboard.add_shot(
        studio, "Harbour", title="Arrival", prompt="Mara looks up", duration=2.0, keyframe=photos["astronaut"]
    )
    own = str(shot.keyframe.path)

    assert changed_fields(shot, form(shot), own, None, "") == {}  # opened and saved back: nothing changes
    assert changed_fields(shot, form(shot, title="Arrival, dusk", duration=2), own, None, "") == {
        "title": "Arrival, dusk"
    }
    assert changed_fields(shot, form(shot), None, None, "") == {"keyframe": None, "keyframe_character": None}
    assert changed_fields(shot, form(shot), None, None, "Mara") == {"keyframe_character": "Mara"}
    assert changed_fields(shot, form(shot), str(photos["astronaut"]), None, "") == {
        "keyframe": str(photos["astronaut"])
    }

    started = storyboard.update_shot(studio, shot.id, **changed_fields(shot, form(shot), None, None, "Mara"))
    assert started.keyframe.source == "character" and started.keyframe.character == "Mara"
    assert changed_fields(started, form(started), None, None, "Mara") == {}
    ended = storyboard.update_shot(studio, shot.id, last_frame=photos["astronaut"])
    mine = str(ended.last_frame.path)
    assert changed_fields(ended, form(ended), None, mine, "Mara") == {}
    assert changed_fields(ended, form(ended), None, None, "Mara") == {"last_frame": None}
    bridged = changed_fields(ended, form(ended, last_frame_from_next=True), None, mine, "Mara")
    assert bridged == {"last_frame_from_next": True}  # ending on the next shot replaces its own last frame
