"""Schema invariants (storage/models.py) and the connection policy (storage/db.py), on a real SQLite file.

Each constraint test writes the offending row through the ORM in its own transaction and checks that SQLite
names the constraint that refused it, so a row refused for some other reason (a NOT NULL, say) fails the test.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError

from storage.db import BUSY_TIMEOUT_MS, DATABASE_FILE, Database, open_database
from storage.models import (
    Character,
    Job,
    MediaObject,
    Project,
    ReferenceImage,
    Shot,
    Take,
    shot_characters,
)

SHA_A = "a" * 64
SHA_B = "b" * 64


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    opened = open_database(tmp_path / "data")
    yield opened
    opened.close()


def take_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "take_number": 1,
        "status": "queued",
        "backend": "fake",
        "seed": 7,
        "prompt": "she turns",
        "width": 640,
        "height": 384,
        "fps": 16,
        "num_frames": 49,
    }
    fields.update(overrides)
    return fields


@pytest.fixture
def ids(db: Database) -> dict[str, int]:
    """One project with a character, a shot and a take; returns their ids."""
    with db.write() as session:
        project = Project(name="Harbour", name_key="harbour")
        character = Character(project=project, name="Mara", name_key="mara")
        shot = Shot(project=project, position=1, prompt="Mara at the pier", duration=4.0)
        session.add_all([project, character, shot])
        session.flush()
        take = Take(shot_id=shot.id, **take_fields())
        session.add(take)
        session.flush()
        return {"project": project.id, "character": character.id, "shot": shot.id, "take": take.id}


def refused(db: Database, *rows: object, match: str) -> None:
    """Adding ``rows`` in one transaction fails with an IntegrityError matching ``match``; nothing is kept."""
    with pytest.raises(IntegrityError, match=re.escape(match)), db.write() as session:
        session.add_all(rows)


def count(db: Database, table: Any) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(table))


# Connection policy


def test_connection_pragmas(db: Database) -> None:
    for transaction in (db.read, db.write):
        with transaction() as session:
            assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert session.execute(text("PRAGMA busy_timeout")).scalar() == BUSY_TIMEOUT_MS == 10_000
            assert session.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL


def test_every_new_connection_gets_the_policy(db: Database) -> None:
    """Two connections open at once: the pool's second one is configured too."""
    with db.engine.connect() as first, db.engine.connect() as second:
        assert first.connection.dbapi_connection is not second.connection.dbapi_connection
        for connection in (first, second):
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
            assert connection.connection.dbapi_connection.isolation_level is None


def test_database_file_is_in_wal_mode_for_other_clients(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "data" / DATABASE_FILE
    assert db.path == path
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_write_transactions_take_the_write_lock_at_begin(db: Database) -> None:
    path = db.path
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with db.read() as session:
            session.execute(select(Project.id)).all()
            other.execute("BEGIN IMMEDIATE")  # a reader does not hold the write lock
            other.execute("ROLLBACK")
        with db.write() as session:
            session.execute(select(Project.id)).all()  # only reads so far, but BEGIN IMMEDIATE already ran
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            assert other.execute("SELECT count(*) FROM projects").fetchone() == (0,)  # WAL: reads go on
    finally:
        other.close()


def test_write_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as session:
        session.add(Project(name="Gone", name_key="gone"))
        session.flush()
        raise RuntimeError("abort")
    assert count(db, Project) == 0


# Uniqueness


def test_duplicate_project_name_key(db: Database, ids: dict[str, int]) -> None:
    refused(db, Project(name="HARBOUR", name_key="harbour"), match="UNIQUE constraint failed: projects.name_key")
    assert count(db, Project) == 1


def test_duplicate_character_name_key_in_one_project(db: Database, ids: dict[str, int]) -> None:
    refused(
        db,
        Character(project_id=ids["project"], name="MARA", name_key="mara"),
        match="UNIQUE constraint failed: characters.project_id, characters.name_key",
    )
    with db.write() as session:
        other = Project(name="Other film", name_key="other film")
        session.add_all([other, Character(project=other, name="Mara", name_key="mara")])
    with db.read() as session:
        assert session.scalars(select(Character.project_id).where(Character.name_key == "mara")).all() == [
            ids["project"],
            ids["project"] + 1,
        ]


def test_duplicate_shot_position(db: Database, ids: dict[str, int]) -> None:
    refused(
        db,
        Shot(project_id=ids["project"], position=1, prompt="again", duration=2.0),
        match="UNIQUE constraint failed: shots.project_id, shots.position",
    )
    with db.write() as session:
        session.add(Shot(project_id=ids["project"], position=2, prompt="next", duration=2.0))
    assert count(db, Shot) == 2


def test_duplicate_take_number(db: Database, ids: dict[str, int]) -> None:
    refused(
        db,
        Take(shot_id=ids["shot"], **take_fields(take_number=1)),
        match="UNIQUE constraint failed: takes.shot_id, takes.take_number",
    )
    with db.write() as session:
        session.add(Take(shot_id=ids["shot"], **take_fields(take_number=2)))
    assert count(db, Take) == 2


def test_at_most_one_approved_take_per_shot(db: Database, ids: dict[str, int]) -> None:
    with db.write() as session:
        session.add(Take(shot_id=ids["shot"], **take_fields(take_number=2, status="done", approved=True)))
        session.add(Take(shot_id=ids["shot"], **take_fields(take_number=3, status="done", approved=False)))
        other_shot = Shot(project_id=ids["project"], position=2, prompt="elsewhere", duration=3.0)
        session.add(other_shot)
        session.flush()
        session.add(Take(shot_id=other_shot.id, **take_fields(status="done", approved=True)))

    refused(
        db,
        Take(shot_id=ids["shot"], **take_fields(take_number=4, status="done", approved=True)),
        match="UNIQUE constraint failed: takes.shot_id",
    )
    with pytest.raises(IntegrityError, match=r"UNIQUE constraint failed: takes\.shot_id"), db.write() as session:
        session.execute(
            text("UPDATE takes SET approved = 1 WHERE shot_id = :s AND take_number = 3"), {"s": ids["shot"]}
        )
    with db.read() as session:
        assert session.scalars(select(Take.take_number).where(Take.approved, Take.shot_id == ids["shot"])).all() == [2]


def test_one_job_per_take(db: Database, ids: dict[str, int]) -> None:
    with db.write() as session:
        session.add(Job(take_id=ids["take"]))
    refused(db, Job(take_id=ids["take"]), match="UNIQUE constraint failed: jobs.take_id")


# Checks


@pytest.mark.parametrize("duration", [0.0, -1.0, 600.001, 601.0])
def test_shot_duration_out_of_range(db: Database, ids: dict[str, int], duration: float) -> None:
    refused(
        db,
        Shot(project_id=ids["project"], position=9, prompt="p", duration=duration),
        match="CHECK constraint failed: ck_shots_duration_range",
    )


def test_shot_duration_limits_are_inclusive_of_ten_minutes(db: Database, ids: dict[str, int]) -> None:
    with db.write() as session:
        session.add(Shot(project_id=ids["project"], position=2, prompt="long", duration=600.0))
        session.add(Shot(project_id=ids["project"], position=3, prompt="short", duration=0.01))
    with db.read() as session:
        assert sorted(session.scalars(select(Shot.duration))) == [0.01, 4.0, 600.0]


@pytest.mark.parametrize("fps", [0, 121, -16])
def test_project_fps_out_of_range(db: Database, fps: int) -> None:
    refused(db, Project(name="P", name_key="p", fps=fps), match="CHECK constraint failed: ck_projects_fps_range")


@pytest.mark.parametrize("fps", [0, 121])
def test_take_fps_out_of_range(db: Database, ids: dict[str, int], fps: int) -> None:
    refused(
        db,
        Take(shot_id=ids["shot"], **take_fields(take_number=2, fps=fps)),
        match="CHECK constraint failed: ck_takes_fps_range",
    )


def test_fps_limits_are_allowed(db: Database) -> None:
    with db.write() as session:
        session.add_all([Project(name="Slow", name_key="slow", fps=1), Project(name="Fast", name_key="fast", fps=120)])
    with db.read() as session:
        assert sorted(session.scalars(select(Project.fps))) == [1, 120]


@pytest.mark.parametrize("take_number", [0, -1])
def test_take_number_must_be_positive(db: Database, ids: dict[str, int], take_number: int) -> None:
    refused(
        db,
        Take(shot_id=ids["shot"], **take_fields(take_number=take_number)),
        match="CHECK constraint failed: ck_takes_take_number_positive",
    )


@pytest.mark.parametrize("status", ["queued", "running", "failed", "cancelled"])
def test_approved_take_must_be_done(db: Database, ids: dict[str, int], status: str) -> None:
    refused(
        db,
        Take(shot_id=ids["shot"], **take_fields(take_number=2, status=status, approved=True)),
        match="CHECK constraint failed: ck_takes_approved_only_when_done",
    )


def test_approved_take_cannot_leave_done(db: Database, ids: dict[str, int]) -> None:
    with db.write() as session:
        session.get(Take, ids["take"]).status = "done"
        session.get(Take, ids["take"]).approved = True
    with pytest.raises(IntegrityError, match="ck_takes_approved_only_when_done"), db.write() as session:
        session.get(Take, ids["take"]).status = "failed"


@pytest.mark.parametrize("status", ["paused", "DONE", ""])
def test_unknown_take_status(db: Database, ids: dict[str, int], status: str) -> None:
    refused(
        db,
        Take(shot_id=ids["shot"], **take_fields(take_number=2, status=status)),
        match="CHECK constraint failed: ck_takes_status_known",
    )


@pytest.mark.parametrize("state", ["waiting", "Queued", ""])
def test_unknown_job_state(db: Database, ids: dict[str, int], state: str) -> None:
    refused(db, Job(take_id=ids["take"], state=state), match="CHECK constraint failed: ck_jobs_state_known")


def test_every_known_take_status_and_job_state_is_accepted(db: Database, ids: dict[str, int]) -> None:
    statuses = ["queued", "running", "done", "failed", "cancelled"]
    with db.write() as session:
        takes = [Take(shot_id=ids["shot"], **take_fields(take_number=n + 2, status=s)) for n, s in enumerate(statuses)]
        session.add_all(takes)
        session.flush()
        session.add_all([Job(take_id=take.id, state=s) for take, s in zip(takes, statuses, strict=True)])
    with db.read() as session:
        assert sorted(session.scalars(select(Job.state))) == sorted(statuses)


def test_shot_cannot_have_two_keyframe_sources(db: Database, ids: dict[str, int]) -> None:
    with db.write() as session:
        session.add(MediaObject(sha256=SHA_A, extension="png", byte_size=10))
    refused(
        db,
        Shot(
            project_id=ids["project"],
            position=2,
            prompt="p",
            duration=1.0,
            keyframe_sha256=SHA_A,
            keyframe_character_id=ids["character"],
        ),
        match="CHECK constraint failed: ck_shots_one_keyframe_source",
    )
    with db.write() as session:
        session.add(Shot(project_id=ids["project"], position=2, prompt="p", duration=1.0, keyframe_sha256=SHA_A))
        session.add(
            Shot(
                project_id=ids["project"], position=3, prompt="p", duration=1.0, keyframe_character_id=ids["character"]
            )
        )
    assert count(db, Shot) == 3


@pytest.mark.parametrize("name", ["", "   "])
def test_blank_names_and_prompts(db: Database, ids: dict[str, int], name: str) -> None:
    refused(db, Project(name=name, name_key=f"key{name}"), match="ck_projects_name_not_blank")
    refused(db, Character(project_id=ids["project"], name=name, name_key="x"), match="ck_characters_name_not_blank")
    refused(
        db, Shot(project_id=ids["project"], position=5, prompt=name, duration=1.0), match="ck_shots_prompt_not_blank"
    )


@pytest.mark.parametrize("sha256", ["A" * 64, "a" * 63, "g" * 64, "a" * 63 + "-"])
def test_media_sha256_must_be_lowercase_hex(db: Database, sha256: str) -> None:
    refused(db, MediaObject(sha256=sha256, extension="png", byte_size=1), match="ck_media_objects_sha256_hex")


# References


def test_media_referenced_by_reference_image_cannot_be_deleted(db: Database, ids: dict[str, int]) -> None:
    with db.write() as session:
        session.add(MediaObject(sha256=SHA_A, extension="png", byte_size=10))
        session.add(ReferenceImage(character_id=ids["character"], sha256=SHA_A, position=0, width=8, height=8))

    with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"), db.write() as session:
        session.delete(session.get(MediaObject, SHA_A))
    with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"), db.write() as session:
        session.execute(delete(MediaObject).where(MediaObject.sha256 == SHA_A))
    assert count(db, MediaObject) == 1


@pytest.mark.parametrize("column", ["keyframe_sha256", "video_sha256", "thumbnail_sha256"])
def test_other_media_references_restrict_too(db: Database, ids: dict[str, int], column: str) -> None:
    with db.write() as session:
        session.add(MediaObject(sha256=SHA_A, extension="bin", byte_size=1))
        session.flush()
        row = session.get(Shot, ids["shot"]) if column == "keyframe_sha256" else session.get(Take, ids["take"])
        setattr(row, column, SHA_A)
    with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"), db.write() as session:
        session.execute(delete(MediaObject))


def test_reference_to_unknown_media_is_refused(db: Database, ids: dict[str, int]) -> None:
    refused(
        db,
        ReferenceImage(character_id=ids["character"], sha256=SHA_B, position=0, width=8, height=8),
        match="FOREIGN KEY constraint failed",
    )


def test_row_with_unknown_parent_is_refused(db: Database) -> None:
    refused(db, Character(project_id=999, name="Ghost", name_key="ghost"), match="FOREIGN KEY constraint failed")
    refused(db, Job(take_id=999), match="FOREIGN KEY constraint failed")


# Cascades


@pytest.mark.parametrize("how", ["orm", "sql"])
def test_deleting_project_removes_everything_below_it(db: Database, ids: dict[str, int], how: str) -> None:
    with db.write() as session:
        session.add(MediaObject(sha256=SHA_A, extension="png", byte_size=10))
        session.add(ReferenceImage(character_id=ids["character"], sha256=SHA_A, position=0, width=8, height=8))
        session.execute(shot_characters.insert().values(shot_id=ids["shot"], character_id=ids["character"]))
        session.add(Job(take_id=ids["take"]))
        # A second project that must be untouched.
        keep = Project(name="Keep", name_key="keep")
        keep_character = Character(project=keep, name="Ines", name_key="ines")
        keep_shot = Shot(project=keep, position=1, prompt="stays", duration=2.0, characters=[keep_character])
        session.add_all([keep, keep_character, keep_shot])
        session.flush()
        keep_take = Take(shot_id=keep_shot.id, **take_fields())
        session.add(keep_take)
        session.flush()
        session.add(Job(take_id=keep_take.id))

    tables = [Project, Character, ReferenceImage, Shot, shot_characters, Take, Job]
    assert [count(db, t) for t in tables] == [2, 2, 1, 2, 2, 2, 2]

    with db.write() as session:
        if how == "orm":
            session.delete(session.get(Project, ids["project"]))
        else:
            session.execute(text("DELETE FROM projects WHERE id = :id"), {"id": ids["project"]})

    assert [count(db, t) for t in tables] == [1, 1, 0, 1, 1, 1, 1]
    with db.read() as session:
        assert session.scalars(select(Project.name)).all() == ["Keep"]
        assert session.scalars(select(Character.name)).all() == ["Ines"]
        assert session.scalars(select(Shot.prompt)).all() == ["stays"]
        assert session.scalar(select(Take.shot_id)) == session.scalar(select(Shot.id))
    # The media row outlives its references; collecting it is the media store's job.
    assert count(db, MediaObject) == 1


def test_deleting_character_clears_keyframe_and_cast(db: Database, ids: dict[str, int]) -> None:
    with db.write() as session:
        shot = session.get(Shot, ids["shot"])
        shot.keyframe_character_id = ids["character"]
        shot.characters.append(session.get(Character, ids["character"]))

    with db.write() as session:
        session.execute(text("DELETE FROM characters WHERE id = :id"), {"id": ids["character"]})

    with db.read() as session:
        shot = session.get(Shot, ids["shot"])
        assert shot is not None
        assert shot.keyframe_character_id is None
        assert shot.characters == []
    assert count(db, shot_characters) == 0
    assert count(db, Take) == 1


def test_deleting_shot_removes_its_takes_and_jobs(db: Database, ids: dict[str, int]) -> None:
    with db.write() as session:
        session.add(Job(take_id=ids["take"]))
    with db.write() as session:
        session.execute(delete(Shot).where(Shot.id == ids["shot"]))
    assert [count(db, t) for t in (Shot, Take, Job, Project, Character)] == [0, 0, 0, 1, 1]


# Timestamps


def test_timestamps_read_back_as_aware_utc(db: Database, ids: dict[str, int]) -> None:
    before = datetime.now(UTC)
    paris_summer = timezone(timedelta(hours=2))
    started = datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=paris_summer)
    with db.write() as session:
        take = session.get(Take, ids["take"])
        take.started_at = started
        take.finished_at = datetime(2025, 6, 1, 12, 45)  # naive values are taken to be UTC

    with db.read() as session:
        take = session.get(Take, ids["take"])
        project = session.get(Project, ids["project"])
        stamps = [take.created_at, take.started_at, take.finished_at, project.created_at, project.updated_at]
        assert all(stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0) for stamp in stamps)
        assert take.started_at == started
        assert take.started_at.hour == 12  # converted, not just relabelled
        assert take.finished_at == datetime(2025, 6, 1, 12, 45, tzinfo=UTC)
        assert before - timedelta(minutes=5) < project.created_at <= datetime.now(UTC)
        raw = session.execute(text("SELECT started_at FROM takes WHERE id = :id"), {"id": ids["take"]}).scalar()
    assert raw.startswith("2025-06-01 12:30:15.123456")


def test_updated_at_moves_on_update(db: Database, ids: dict[str, int]) -> None:
    with db.read() as session:
        first = session.get(Project, ids["project"]).updated_at
    with db.write() as session:
        session.get(Project, ids["project"]).width = 1280
    with db.read() as session:
        project = session.get(Project, ids["project"])
        assert project.width == 1280
        assert project.updated_at > first
        assert project.updated_at.utcoffset() == timedelta(0)


def test_json_columns_round_trip(db: Database, ids: dict[str, int]) -> None:
    params = {"steps": 30, "guidance": 5.5, "loras": ["a", "b"], "negative": None}
    with db.write() as session:
        take = session.get(Take, ids["take"])
        take.params = params
        take.provenance = {"model": {"repo": "x/y", "revision": "abc"}}
    with db.read() as session:
        take = session.get(Take, ids["take"])
        assert take.params == params
        assert take.provenance["model"]["revision"] == "abc"
        assert take.timings == {}


@pytest.mark.parametrize("name", ["what?", "100%", "a%20b", "x?mode=ro", "#hash", "mode=memory&cache=shared"])
def test_the_database_lives_in_the_folder_the_user_named(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    first, second = open_database(folder), open_database(tmp_path / "plain")
    try:
        with first.write() as session:
            session.add(Project(name="Here", name_key="here"))
        assert count(first, Project) == 1 and count(second, Project) == 0
    finally:
        first.close()
        second.close()
    assert (folder / DATABASE_FILE).is_file()  # inside the folder, so a copy of the folder holds it
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "plain"])  # and nowhere else
