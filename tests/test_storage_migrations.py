"""Alembic migrations (storage/migrate.py), applied by the studio when it opens a data directory.

The key test builds a database the way the first release left it (revision 0001, rows written with raw SQL),
then opens it with this version and checks that every row survived the upgrade to head.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from projects.errors import StudioError
from projects.studio import open_studio
from storage.db import DATABASE_FILE, make_engine, open_database
from storage.migrate import (
    MigrationError,
    alembic_config,
    current_revision,
    head_revision,
    known_revisions,
    upgrade,
)
from storage.models import Base, Character, Job, MediaObject, Project, ReferenceImage, Shot, Take

TABLES_0001 = ["media_objects", "projects", "characters", "reference_images", "shots", "shot_characters", "takes"]

SHA_REF = "1" * 64
SHA_KEY = "2" * 64
SHA_VIDEO = "3" * 64
SHA_THUMB = "4" * 64
CREATED = "2025-01-02 03:04:05.000000"
STARTED = "2025-01-02 04:00:00.250000"
FINISHED = "2025-01-02 04:03:30.000000"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def engine(data_dir: Path) -> Iterator[Engine]:
    made = make_engine(data_dir / DATABASE_FILE)
    yield made
    made.dispose()


def schema_diffs(engine: Engine) -> list[Any]:
    """Differences between the database and the models, as ``alembic check`` would report them."""
    with engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    # SQLite's PRAGMA index_info reports the columns of ix_jobs_queue_order but not that ``priority`` is
    # DESC, so the reflected index never equals the model's (state, priority DESC, position) and Alembic
    # reports it as removed and added again. Only that pair is dropped here;
    # test_expression_and_partial_indexes_are_exact checks the index's real definition instead.
    return [
        diff
        for diff in diffs
        if not (diff[0] in ("add_index", "remove_index") and diff[1].name == "ix_jobs_queue_order")
    ]


def index_sql(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
        return dict(rows.all())


def schema_sql(db_file: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(db_file) as raw:
        rows = raw.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    raw.close()
    return rows


def table_rows(
    db_file: Path, tables: list[str], columns: dict[str, list[str]] | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables``; with ``columns``, only those columns (the ones an older revision had)."""
    with sqlite3.connect(db_file) as raw:
        dump = {
            table: raw.execute(
                f"SELECT {', '.join(columns[table]) if columns else '*'} FROM {table} ORDER BY rowid"
            ).fetchall()
            for table in tables
        }
    raw.close()
    return dump


def table_columns(db_file: Path, tables: list[str]) -> dict[str, list[str]]:
    with sqlite3.connect(db_file) as raw:
        found = {table: [row[1] for row in raw.execute(f"PRAGMA table_info({table})")] for table in tables}
    raw.close()
    return found


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.connect() as connection, connection.begin():
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


# Rows as the first release wrote them, in column order of revision 0001.
ROWS_0001: dict[str, list[tuple[Any, ...]]] = {
    "media_objects": [
        (SHA_REF, "png", 2048, CREATED),
        (SHA_KEY, "jpg", 4096, CREATED),
        (SHA_VIDEO, "mp4", 1_500_000, CREATED),
        (SHA_THUMB, "webp", 900, CREATED),
    ],
    "projects": [(1, "Harbour Lights", "harbour lights", 832, 480, 24, CREATED, CREATED)],
    "characters": [
        (1, 1, "Mara", "mara", "a fisherman's daughter, red coat", CREATED),
        (2, 1, "Oren", "oren", "", CREATED),
    ],
    "reference_images": [(1, 1, SHA_REF, 0, "mara front.png", 512, 640, CREATED)],
    "shots": [
        (1, 1, 1, "1A", "Arrival", "Mara walks onto the pier", 4.5, "pan left", None, 1, 0, CREATED, CREATED),
        (2, 1, 2, "1B", "", "Close on Oren, rain", 3.25, "static", SHA_KEY, None, 1, CREATED, CREATED),
    ],
    "shot_characters": [(1, 1), (1, 2), (2, 2)],
    "takes": [
        (1, 1, 1, "done", "wan", 42, "Mara walks", 832, 480, 24, 109, '{"steps": 30, "cfg": 5.0}', SHA_VIDEO,
         SHA_THUMB, '{"total": 212.5}', '{"model": "wan2.1", "revision": "abc123"}', None, 1, CREATED, STARTED,
         FINISHED),
        (2, 1, 2, "failed", "wan", 43, "Mara walks", 832, 480, 24, 109, "{}", None, None, "{}", "{}",
         "CUDA out of memory", 0, CREATED, STARTED, FINISHED),
        (3, 2, 1, "done", "wan", 7, "Close on Oren", 832, 480, 24, 81, "{}", None, None, "{}", "{}", None, 0,
         CREATED, None, None),
    ],
}  # fmt: skip


def fill_revision_0001(engine: Engine) -> None:
    """Insert ROWS_0001 with raw SQL, so that today's models play no part in writing them."""
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        raw.execute("BEGIN")
        for table, rows in ROWS_0001.items():
            placeholders = ", ".join("?" * len(rows[0]))
            raw.executemany(f"INSERT INTO {table} VALUES ({placeholders})", rows)
        raw.execute("COMMIT")


# Fresh databases


def test_revision_chain() -> None:
    assert known_revisions() >= {"0001", head_revision()}
    assert head_revision() != "0001"  # 0002 added the render queue


def test_new_database_is_at_head_and_matches_models(tmp_path: Path) -> None:
    db = open_database(tmp_path / "data")
    try:
        assert current_revision(db.engine) == head_revision()
        assert schema_diffs(db.engine) == []
        assert set(inspect(db.engine).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
    finally:
        db.close()


# Without the jobs table Alembic cannot even try to reflect ix_jobs_queue_order, and says so.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_schema_diffs_would_see_a_real_difference(engine: Engine) -> None:
    """The comparison is not vacuous: a database stuck at 0001 differs from the models by the jobs table."""
    upgrade(engine, "0001")
    diffs = schema_diffs(engine)
    assert ("add_table", "jobs") in [(d[0], d[1].name) for d in diffs if d[0] == "add_table"]


def test_expression_and_partial_indexes_are_exact(tmp_path: Path) -> None:
    db = open_database(tmp_path / "data")
    try:
        indexes = index_sql(db.engine)
    finally:
        db.close()
    assert (
        indexes["ix_jobs_queue_order"] == "CREATE INDEX ix_jobs_queue_order ON jobs (state, priority DESC, position)"
    )
    assert indexes["uq_takes_one_approved_per_shot"] == (
        "CREATE UNIQUE INDEX uq_takes_one_approved_per_shot ON takes (shot_id) WHERE approved"
    )


def test_check_constraints_and_delete_rules_match_models(tmp_path: Path) -> None:
    """Alembic compares neither CHECK constraints nor ON DELETE rules; compare them here."""
    db = open_database(tmp_path / "data")
    try:
        inspector = inspect(db.engine)
        reflected_checks: set[tuple[str, str | None]] = set()
        reflected_fks: set[tuple[str, str, str, str | None]] = set()
        for table in Base.metadata.sorted_tables:
            reflected_checks |= {(table.name, c["name"]) for c in inspector.get_check_constraints(table.name)}
            reflected_fks |= {
                (table.name, fk["constrained_columns"][0], fk["referred_table"], fk["options"].get("ondelete"))
                for fk in inspector.get_foreign_keys(table.name)
            }
    finally:
        db.close()
    model_checks = {
        (table.name, c.name)
        for table in Base.metadata.sorted_tables
        for c in table.constraints
        if isinstance(c, CheckConstraint)
    }
    model_fks = {
        (table.name, fk.parent.name, fk.column.table.name, fk.ondelete)
        for table in Base.metadata.sorted_tables
        for fk in table.foreign_keys
    }
    assert reflected_checks == model_checks
    assert ("takes", "ck_takes_approved_only_when_done") in reflected_checks
    # 2 media, 3 projects, 1 characters, 1 references, 7 shots, 6 takes, 4 jobs, 2 take inputs, 2 scores,
    # 8 picture takes, 2 picture inputs
    assert len(reflected_checks) == 38
    assert ("jobs", "ck_jobs_renders_one_thing") in reflected_checks
    assert reflected_fks == model_fks
    assert ("shots", "keyframe_character_id", "characters", "SET NULL") in reflected_fks
    assert ("reference_images", "sha256", "media_objects", "RESTRICT") in reflected_fks


def test_upgrading_twice_is_a_no_op(engine: Engine, data_dir: Path) -> None:
    db_file = data_dir / DATABASE_FILE
    upgrade(engine, "0001")
    at_0001 = schema_sql(db_file)
    upgrade(engine, "0001")
    assert schema_sql(db_file) == at_0001
    assert current_revision(engine) == "0001"

    upgrade(engine)
    at_head = schema_sql(db_file)
    assert at_head != at_0001
    upgrade(engine)
    upgrade(engine, "head")
    assert schema_sql(db_file) == at_head
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1


def test_downgrade_to_base_then_upgrade_again(engine: Engine) -> None:
    upgrade(engine)
    fresh_indexes = index_sql(engine)

    downgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    assert "jobs" not in inspect(engine).get_table_names()

    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert schema_diffs(engine) == []
    assert index_sql(engine) == fresh_indexes


def test_connections_have_foreign_keys_on_after_upgrade(engine: Engine) -> None:
    """upgrade() switches foreign keys off while it works; the pooled connection must get them back."""
    upgrade(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


# Upgrading a database written by the first release


def test_database_from_revision_0001_upgrades_with_every_row(engine: Engine, data_dir: Path) -> None:
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    assert "jobs" not in inspect(engine).get_table_names()
    fill_revision_0001(engine)
    engine.dispose()

    db_file = data_dir / DATABASE_FILE
    before = table_rows(db_file, TABLES_0001)
    assert before == ROWS_0001  # what was written is what SQLite hands back
    columns_0001 = table_columns(db_file, TABLES_0001)

    studio = open_studio(data_dir)
    try:
        assert current_revision(studio.db.engine) == head_revision()
        assert table_rows(db_file, TABLES_0001, columns_0001) == before
        # Columns added since take their defaults on old rows.
        with sqlite3.connect(db_file) as raw:
            assert raw.execute("SELECT DISTINCT stale FROM shots").fetchall() == [(0,)]
            assert raw.execute("SELECT count(*) FROM takes WHERE source_take_id IS NOT NULL").fetchone() == (0,)
            assert raw.execute(
                "SELECT sql FROM sqlite_master WHERE name = 'uq_takes_one_approved_per_shot'"
            ).fetchone() == ("CREATE UNIQUE INDEX uq_takes_one_approved_per_shot ON takes (shot_id) WHERE approved",)
        raw.close()
        assert schema_diffs(studio.db.engine) == []

        with studio.read() as session:
            project = session.scalars(select(Project)).one()
            assert (project.name, project.name_key, project.width, project.height, project.fps) == (
                "Harbour Lights",
                "harbour lights",
                832,
                480,
                24,
            )
            assert project.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
            assert [(c.name, c.description) for c in project.characters] == [
                ("Mara", "a fisherman's daughter, red coat"),
                ("Oren", ""),
            ]
            reference = session.scalars(select(ReferenceImage)).one()
            assert (reference.character.name, reference.sha256, reference.original_name) == (
                "Mara",
                SHA_REF,
                "mara front.png",
            )
            assert (reference.media.extension, reference.media.byte_size) == ("png", 2048)

            first, second = project.shots
            assert (first.position, first.scene, first.title, first.duration, first.camera) == (
                1,
                "1A",
                "Arrival",
                4.5,
                "pan left",
            )
            assert first.keyframe_character.name == "Mara"
            assert first.continue_from_previous is False
            assert [c.name for c in first.characters] == ["Mara", "Oren"]
            assert second.keyframe is not None and second.keyframe.extension == "jpg"
            assert second.continue_from_previous is True
            assert [c.name for c in second.characters] == ["Oren"]

            approved = session.scalars(select(Take).where(Take.approved)).one()
            assert (approved.shot_id, approved.take_number, approved.status, approved.seed) == (1, 1, "done", 42)
            assert approved.params == {"steps": 30, "cfg": 5.0}
            assert approved.timings == {"total": 212.5}
            assert approved.provenance == {"model": "wan2.1", "revision": "abc123"}
            assert (approved.video.extension, approved.thumbnail.byte_size) == ("mp4", 900)
            assert approved.started_at == datetime(2025, 1, 2, 4, 0, 0, 250000, tzinfo=UTC)
            assert approved.finished_at == datetime(2025, 1, 2, 4, 3, 30, tzinfo=UTC)
            assert [(t.take_number, t.status, t.error) for t in first.takes] == [
                (1, "done", None),
                (2, "failed", "CUDA out of memory"),
            ]
            assert second.takes[0].started_at is None
            assert session.scalar(select(Job.id)) is None

        # The new jobs table works: a job for an existing take, none for a missing one.
        with studio.write() as session:
            session.add(Job(take_id=3, priority=5))
        with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"), studio.write() as session:
            session.add(Job(take_id=99))
        with studio.read() as session:
            job = session.scalars(select(Job)).one()
            assert (job.take_id, job.state, job.priority, job.attempts, job.cancel_requested) == (
                3,
                "queued",
                5,
                0,
                False,
            )
            assert job.take.shot.title == ""
            assert job.created_at.tzinfo is not None
            # Studio.write collected orphans after each commit: every migrated media row was referenced.
            assert session.scalars(select(MediaObject.sha256).order_by(MediaObject.sha256)).all() == [
                SHA_REF,
                SHA_KEY,
                SHA_VIDEO,
                SHA_THUMB,
            ]
            assert session.get(Character, 2).name == "Oren"
            assert session.get(Shot, 2).keyframe_sha256 == SHA_KEY
    finally:
        studio.close()

    # Reopening an up-to-date database changes nothing.
    after = table_rows(db_file, [*TABLES_0001, "jobs", "alembic_version"])
    open_studio(data_dir).close()
    assert table_rows(db_file, [*TABLES_0001, "jobs", "alembic_version"]) == after
    assert after["alembic_version"] == [(head_revision(),)]


def test_failed_upgrade_leaves_revision_0001_untouched(engine: Engine, data_dir: Path) -> None:
    """The whole upgrade is one transaction: if a step fails, neither the schema nor the revision moves."""
    upgrade(engine, "0001")
    fill_revision_0001(engine)
    with engine.connect() as connection:
        connection.exec_driver_sql("CREATE TABLE jobs (note TEXT)")  # clashes with 0002's CREATE TABLE
        connection.exec_driver_sql("INSERT INTO jobs VALUES ('mine')")
        connection.commit()
    before = table_rows(data_dir / DATABASE_FILE, [*TABLES_0001, "jobs"])

    with pytest.raises(OperationalError, match="table jobs already exists"):
        upgrade(engine)

    assert current_revision(engine) == "0001"
    assert table_rows(data_dir / DATABASE_FILE, [*TABLES_0001, "jobs"]) == before
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_upgrade_refuses_to_commit_broken_references(engine: Engine, data_dir: Path) -> None:
    upgrade(engine, "0001")
    fill_revision_0001(engine)
    engine.dispose()
    with sqlite3.connect(data_dir / DATABASE_FILE) as raw:  # foreign keys are off in a plain connection
        raw.execute("INSERT INTO characters VALUES (3, 404, 'Ghost', 'ghost', '', ?)", (CREATED,))
    raw.close()

    with pytest.raises(StudioError, match="broken references"):
        open_studio(data_dir)

    assert current_revision(engine) == "0001"
    assert "jobs" not in inspect(engine).get_table_names()


def test_upgrade_function_raises_migration_error_for_broken_references(engine: Engine, data_dir: Path) -> None:
    upgrade(engine, "0001")
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        raw.execute("PRAGMA foreign_keys=OFF")
        raw.execute("INSERT INTO shot_characters VALUES (7, 8)")
        raw.execute("PRAGMA foreign_keys=ON")
    with pytest.raises(MigrationError, match="left broken references"):
        upgrade(engine)
    assert current_revision(engine) == "0001"


# Refusing what cannot be opened


def test_database_from_a_newer_version_is_refused_and_unchanged(data_dir: Path) -> None:
    db = open_database(data_dir)
    with db.write() as session:
        session.add(Project(name="Future", name_key="future"))
        session.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    db.close()
    db_file = data_dir / DATABASE_FILE
    original = db_file.read_bytes()
    original_schema = schema_sql(db_file)

    with pytest.raises(StudioError, match="written by a newer version of Continuity") as caught:
        open_studio(data_dir)

    assert "ffff" in str(caught.value)
    assert isinstance(caught.value.__cause__, MigrationError)
    assert db_file.read_bytes() == original
    assert schema_sql(db_file) == original_schema
    rows = table_rows(db_file, ["projects", "alembic_version"])
    assert [r[1] for r in rows["projects"]] == ["Future"]
    assert rows["alembic_version"] == [("ffff",)]


def test_newer_revision_is_refused_before_any_target_revision(engine: Engine) -> None:
    upgrade(engine, "0001")
    with engine.connect() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
        connection.commit()
    for target in ("head", "0001"):
        with pytest.raises(MigrationError, match="newer version"):
            upgrade(engine, target)
    assert current_revision(engine) == "9999_future"


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("not a folder")
    with pytest.raises(StudioError, match="is a file"):
        open_studio(path)
    assert path.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_data_dir_with_a_damaged_database_is_refused(data_dir: Path) -> None:
    db_file = data_dir / DATABASE_FILE
    db_file.write_bytes(b"this is not a SQLite database\n" * 10)
    with pytest.raises(StudioError):
        open_studio(data_dir)
    assert db_file.read_bytes() == b"this is not a SQLite database\n" * 10


def test_data_dir_inside_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    with pytest.raises(StudioError, match=r"cannot use .* as the data directory"):
        open_studio(blocker / "data")
    assert blocker.read_text() == "a file"


# Ids are never reused (0005)

ID_TABLES = ("projects", "characters", "reference_images", "shots", "takes", "jobs", "picture_takes")


def create_sql(engine: Engine, table: str) -> str:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).scalar_one()


def test_tables_users_refer_to_by_id_never_reuse_ids(engine: Engine) -> None:
    upgrade(engine)
    for table in ID_TABLES:
        assert "AUTOINCREMENT" in create_sql(engine, table), table
    assert "AUTOINCREMENT" not in create_sql(engine, "take_scores")


def test_an_upgraded_database_does_not_hand_out_a_deleted_rows_id(engine: Engine, data_dir: Path) -> None:
    upgrade(engine, "0001")
    fill_revision_0001(engine)
    columns_0001 = table_columns(data_dir / DATABASE_FILE, ["projects"])
    upgrade(engine)
    assert table_rows(data_dir / DATABASE_FILE, ["projects"], columns_0001) == {"projects": ROWS_0001["projects"]}
    with engine.begin() as connection:  # the rebuild seeded SQLite's counter from the highest id it copied
        connection.exec_driver_sql("DELETE FROM projects WHERE id = (SELECT max(id) FROM projects)")
        highest_project = connection.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = 'projects'")
        assert highest_project.scalar_one() == max(row[0] for row in ROWS_0001["projects"])
    engine.dispose()

    studio = open_studio(data_dir)
    try:
        from projects import project

        made = project.create_project(studio, "After the upgrade")
        assert made.id == max(row[0] for row in ROWS_0001["projects"]) + 1  # not the deleted one's id
        project.delete_project(studio, made.id)
        again = project.create_project(studio, "And again")
        assert again.id == made.id + 1
    finally:
        studio.close()


# The look descriptor's score is no longer called identity (0007)


def test_identity_scored_without_a_face_model_becomes_look(engine: Engine) -> None:
    upgrade(engine, "0001")
    fill_revision_0001(engine)
    upgrade(engine, "0006")
    take_id = ROWS_0001["takes"][0][0]
    rows = [
        ("offline-colour-texture-v1", "identity", 0.61),
        ("clip:model:abc", "identity", 0.72),
        ("offline-colour-texture-v1+arcface:w600k", "identity", 0.83),
        ("offline-colour-texture-v1", "stability", 0.94),
    ]
    with engine.begin() as connection:
        for embedder, metric, value in rows:
            connection.exec_driver_sql(
                "INSERT INTO take_scores (take_id, embedder, metric, value, details, created_at) "
                "VALUES (?, ?, ?, ?, '{}', ?)",
                (take_id, embedder, metric, value, CREATED),
            )
    upgrade(engine)
    with engine.connect() as connection:
        stored = set(connection.exec_driver_sql("SELECT embedder, metric, value FROM take_scores").fetchall())
        assert stored == {
            ("offline-colour-texture-v1", "look", 0.61),
            ("clip:model:abc", "look", 0.72),
            ("offline-colour-texture-v1+arcface:w600k", "identity", 0.83),
            ("offline-colour-texture-v1", "stability", 0.94),
        }
        with pytest.raises(IntegrityError):
            connection.exec_driver_sql(
                "INSERT INTO take_scores (take_id, embedder, metric, value, details, created_at) "
                "VALUES (?, 'x', 'beauty', 0.5, '{}', ?)",
                (take_id, CREATED),
            )


# Several studios starting at once


@pytest.mark.parametrize("start", ["fresh", "0001"])
def test_studios_opening_one_data_directory_at_once_take_turns_at_the_migration(
    start: str, engine: Engine, data_dir: Path
) -> None:
    if start == "0001":
        upgrade(engine, "0001")
        fill_revision_0001(engine)
    engine.dispose()
    root = Path(__file__).resolve().parents[1]
    code = f"from projects.studio import open_studio\nopen_studio({str(data_dir)!r}).close()\n"
    starts = [
        subprocess.Popen([sys.executable, "-c", code], cwd=root, stderr=subprocess.PIPE, text=True) for _ in range(5)
    ]
    errors = [process.communicate(timeout=120)[1] for process in starts]
    assert [process.returncode for process in starts] == [0] * 5, errors
    check = make_engine(data_dir / DATABASE_FILE)
    try:
        assert current_revision(check) == head_revision()
    finally:
        check.dispose()
