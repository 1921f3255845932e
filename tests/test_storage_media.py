"""The content-addressed media store (storage/media.py) and the media side effects of ``Studio.write``.

Everything runs against real files in ``tmp_path`` and a real SQLite database; the only stand-in is the
crash simulation, which makes the rename inside ``put_stream`` raise.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from projects.images import check_image
from projects.studio import Studio, open_studio
from storage.media import (
    MediaProblem,
    MediaStore,
    StoredFile,
    collect_orphans,
    file_sha256,
    register,
    remove_unrecorded_files,
    verify,
)
from storage.models import Character, MediaObject, Project, ReferenceImage, Shot, Take

TWO_HOURS_AGO = time.time() - 7200


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_old(path: Path, when: float = TWO_HOURS_AGO) -> None:
    os.utime(path, (when, when))


def part_files(store: MediaStore) -> list[Path]:
    return sorted(store.temp_dir.glob("*.part"))


def media_row(studio: Studio, sha256: str) -> tuple[str, int] | None:
    with studio.db.read() as session:
        row = session.get(MediaObject, sha256)
        return None if row is None else (row.extension, row.byte_size)


def add_reference(session: Session, stored: StoredFile, name: str = "Mara") -> ReferenceImage:
    """A project with one character whose first reference image is ``stored``."""
    project = Project(name=f"Film {name}", name_key=f"film {name.casefold()}")
    character = Character(project=project, name=name, name_key=name.casefold())
    reference = ReferenceImage(character=character, sha256=stored.sha256, position=0, width=64, height=64)
    session.add_all([project, character, reference])
    session.flush()
    return reference


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "media")


class Boom(Exception):
    """Raised inside a transaction to make it roll back."""


# Storing


def test_put_bytes_stores_under_content_path(store: MediaStore) -> None:
    data = b"\x89PNG pretend image bytes"
    stored = store.put_bytes(data, "png")

    digest = sha(data)
    expected = store.root / digest[:2] / digest[2:4] / f"{digest}.png"
    assert stored.sha256 == digest
    assert stored.extension == "png"
    assert stored.byte_size == len(data)
    assert stored.created is True
    assert stored.path == expected == store.path_for(digest, "png")
    assert expected.read_bytes() == data
    assert list(store.stored_paths()) == [expected]
    assert part_files(store) == []


def test_put_file_streams_large_file_in_chunks(store: MediaStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 12_000  # about 3 MiB: more than one 1 MiB chunk
    source = tmp_path / "clip.mp4"
    source.write_bytes(data)

    stored = store.put_file(source, "mp4")

    assert stored.sha256 == sha(data)
    assert stored.byte_size == len(data)
    assert stored.path.read_bytes() == data
    assert file_sha256(stored.path) == sha(data)
    assert source.read_bytes() == data  # the source is copied, not moved


def test_same_bytes_twice_is_stored_once(store: MediaStore, tmp_path: Path) -> None:
    data = b"the same frame"
    first = store.put_bytes(data, "png")
    source = tmp_path / "again.png"
    source.write_bytes(data)
    second = store.put_file(source, "png")
    third = store.put_bytes(data, "png")

    assert first.created is True
    assert second.created is False
    assert third.created is False
    assert first.path == second.path == third.path
    assert list(store.stored_paths()) == [first.path]
    assert first.path.read_bytes() == data
    assert part_files(store) == []


def test_extension_is_normalised(store: MediaStore) -> None:
    stored = store.put_bytes(b"jpeg", ".JPG")
    assert stored.extension == "jpg"
    assert stored.path.name == f"{sha(b'jpeg')}.jpg"


def test_empty_bytes_are_storable(store: MediaStore) -> None:
    stored = store.put_bytes(b"", "bin")
    assert stored.sha256 == sha(b"")
    assert stored.byte_size == 0
    assert stored.path.read_bytes() == b""


@pytest.mark.parametrize(
    "extension",
    [
        "",
        ".",
        "p/ng",
        "../png",
        "pn g",
        "abcdefghijk",
        "pñg",
        "png\n",
    ],
)
def test_bad_extension_is_refused(store: MediaStore, extension: str) -> None:
    with pytest.raises(ValueError, match="extension"):
        store.put_bytes(b"data", extension)
    assert list(store.stored_paths()) == []
    assert part_files(store) == []


@pytest.mark.parametrize(
    "name",
    [
        "0" * 63,
        "0" * 65,
        "g" * 64,
        "A" * 64,
        "../" + "0" * 61,
        "",
        "0" * 64 + "\n",
    ],
)
def test_bad_sha_name_is_refused(store: MediaStore, name: str) -> None:
    with pytest.raises(ValueError, match="not a media name"):
        store.path_for(name, "png")
    with pytest.raises(ValueError, match="not a media name"):
        store.check(name, "png")
    with pytest.raises(ValueError, match="not a media name"):
        store.remove(name, "png")


def test_path_for_refuses_bad_extension(store: MediaStore) -> None:
    with pytest.raises(ValueError, match="not a media name"):
        store.path_for("0" * 64, "../png")
    assert store.path_for("0" * 64, "png").name == "0" * 64 + ".png"


# Crashes mid-write


@pytest.mark.parametrize("crash", [KeyboardInterrupt, OSError])
def test_crash_before_rename_leaves_no_content_file(
    store: MediaStore, monkeypatch: pytest.MonkeyPatch, crash: type[BaseException]
) -> None:
    data = b"half-written render"
    renames: list[Path] = []

    def crashing_replace(self: Path, target: str | Path) -> Path:
        renames.append(self)
        raise crash("power cut")

    monkeypatch.setattr(Path, "replace", crashing_replace)
    with pytest.raises(crash):
        store.put_bytes(data, "mp4")
    monkeypatch.undo()

    assert len(renames) == 1 and renames[0].suffix == ".part"  # the crash really hit the rename
    assert not store.path_for(sha(data), "mp4").exists()
    assert list(store.stored_paths()) == []
    assert part_files(store) == []

    # The store still works afterwards, and the retry counts as a new file.
    stored = store.put_bytes(data, "mp4")
    assert stored.created is True
    assert stored.path.read_bytes() == data


class FailingStream(io.RawIOBase):
    """Gives one chunk of bytes, then fails like a disconnected upload."""

    def __init__(self) -> None:
        self.calls = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise OSError("connection reset")
        return b"x" * 1000


def test_failing_source_stream_leaves_nothing(store: MediaStore) -> None:
    stream = FailingStream()
    with pytest.raises(OSError, match="connection reset"):
        store.put_stream(stream, "bin")
    assert stream.calls == 2
    assert list(store.stored_paths()) == []
    assert part_files(store) == []


def test_sweep_removes_old_part_files_and_keeps_fresh_ones(store: MediaStore) -> None:
    old = store.temp_dir / "tmpold.part"
    old.write_bytes(b"left by a crash")
    make_old(old)
    fresh = store.temp_dir / "tmpfresh.part"
    fresh.write_bytes(b"being written by another process")
    other = store.temp_dir / "notes.txt"
    other.write_bytes(b"not a temporary media file")
    make_old(other)

    assert store.sweep_temporary_files() == 1
    assert not old.exists()
    assert fresh.exists()
    assert other.exists()

    assert store.sweep_temporary_files(min_age_seconds=0) == 1
    assert not fresh.exists()


def test_open_studio_sweeps_old_part_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    open_studio(data_dir).close()
    leftover = data_dir / "media" / ".tmp" / "tmpcrash.part"
    leftover.write_bytes(b"partial")
    make_old(leftover)

    studio = open_studio(data_dir)
    try:
        assert not leftover.exists()
        assert studio.media.temp_dir == leftover.parent
    finally:
        studio.close()


# Verifying


def test_verify_reports_missing_and_corrupted_files(studio: Studio) -> None:
    store = studio.media
    good = store.put_bytes(b"good", "png")
    corrupt = store.put_bytes(b"soon corrupt", "png")
    gone = store.put_bytes(b"soon gone", "jpg")
    with studio.db.write() as session:
        for stored in (good, corrupt, gone):
            register(session, stored)

    with studio.db.read() as session:
        assert verify(session, store) == []

    corrupt.path.write_bytes(b"soon c0rrupt")  # same size, different bytes
    gone.path.unlink()

    with studio.db.read() as session:
        problems = verify(session, store)
    assert sorted(problems, key=lambda p: p.sha256) == sorted(
        [
            MediaProblem(corrupt.sha256, corrupt.path, "hash mismatch"),
            MediaProblem(gone.sha256, gone.path, "missing"),
        ],
        key=lambda p: p.sha256,
    )
    assert store.check(good.sha256, "png") is None


def test_verify_ignores_files_no_row_knows(studio: Studio) -> None:
    stray = studio.media.put_bytes(b"stray", "png")
    stray.path.write_bytes(b"corrupted stray")
    with studio.db.read() as session:
        assert verify(session, studio.media) == []
    assert studio.media.check(stray.sha256, "png") == "hash mismatch"


# Registering and collecting


def test_register_is_idempotent(studio: Studio) -> None:
    stored = studio.media.put_bytes(b"register me", "webp")
    with studio.db.write() as session:
        first = register(session, stored)
        second = register(session, stored)
        assert first is second
    with studio.db.read() as session:
        assert session.scalar(select(func.count()).select_from(MediaObject)) == 1
    assert media_row(studio, stored.sha256) == ("webp", len(b"register me"))


def test_collect_orphans_keeps_every_kind_of_reference(studio: Studio) -> None:
    store = studio.media
    reference, keyframe, video, thumbnail, orphan = (
        store.put_bytes(f"media {i}".encode(), ext) for i, ext in enumerate(["png", "jpg", "mp4", "webp", "bin"])
    )
    with studio.db.write() as session:
        for stored in (reference, keyframe, video, thumbnail, orphan):
            register(session, stored)
        ref_row = add_reference(session, reference)
        shot = Shot(project_id=ref_row.character.project_id, position=1, prompt="a door", duration=4.0)
        shot.keyframe_sha256 = keyframe.sha256
        session.add(shot)
        session.flush()
        take = Take(
            shot_id=shot.id,
            take_number=1,
            status="done",
            backend="fake",
            seed=1,
            prompt="a door",
            width=64,
            height=64,
            fps=16,
            num_frames=17,
            video_sha256=video.sha256,
            thumbnail_sha256=thumbnail.sha256,
        )
        session.add(take)
        session.flush()

        assert collect_orphans(session) == [(orphan.sha256, "bin")]
        assert session.get(MediaObject, orphan.sha256) is None

    assert media_row(studio, orphan.sha256) is None
    for kept in (reference, keyframe, video, thumbnail):
        assert media_row(studio, kept.sha256) == (kept.extension, kept.byte_size)
    # collect_orphans only deletes rows: removing the file after commit is the caller's job.
    assert orphan.path.exists()


def test_studio_write_removes_media_left_unreferenced(studio: Studio, photos: dict[str, Path]) -> None:
    with studio.write() as session:
        unused = studio.store_image(session, check_image(photos["coffee"]))
        used = studio.store_image(session, check_image(photos["astronaut"]))
        add_reference(session, used)

    assert unused.created and used.created
    assert media_row(studio, unused.sha256) is None
    assert not unused.path.exists()
    assert media_row(studio, used.sha256) == ("png", used.byte_size)
    assert used.path.read_bytes() == photos["astronaut"].read_bytes()


def test_studio_write_removes_files_of_deleted_rows_after_commit(studio: Studio, photos: dict[str, Path]) -> None:
    with studio.write() as session:
        stored = studio.store_image(session, check_image(photos["chelsea"]))
        project_id = add_reference(session, stored).character.project_id
    assert stored.path.exists()

    with studio.write() as session:
        session.delete(session.get(Project, project_id))

    with studio.db.read() as session:
        assert session.scalar(select(func.count()).select_from(ReferenceImage)) == 0
    assert media_row(studio, stored.sha256) is None
    assert not stored.path.exists()


def test_remove_unrecorded_files(studio: Studio) -> None:
    store = studio.media
    recorded = store.put_bytes(b"recorded", "png")
    with studio.db.write() as session:
        register(session, recorded)
    old_stray = store.put_bytes(b"crash after rename, long ago", "png")
    fresh_stray = store.put_bytes(b"renamed just now, commit pending", "png")
    part = store.temp_dir / "tmpx.part"
    part.write_bytes(b"partial")
    for path in (recorded.path, old_stray.path, part):
        make_old(path)

    with studio.db.read() as session:
        assert remove_unrecorded_files(session, store) == 1
    assert not old_stray.path.exists()
    assert fresh_stray.path.exists()
    assert recorded.path.exists()
    assert part.exists()  # temporary files are sweep_temporary_files' business

    with studio.db.read() as session:
        assert remove_unrecorded_files(session, store, min_age_seconds=0) == 1
    assert not fresh_stray.path.exists()
    assert recorded.path.read_bytes() == b"recorded"


# Studio.write rollbacks


def test_failed_write_removes_newly_stored_file(studio: Studio, photos: dict[str, Path]) -> None:
    with pytest.raises(Boom), studio.write() as session:
        stored = studio.store_image(session, check_image(photos["rocket"]))
        add_reference(session, stored)
        assert stored.path.exists()
        raise Boom

    assert stored.created is True
    assert media_row(studio, stored.sha256) is None
    assert not stored.path.exists()
    with studio.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Project)) == 0
    assert list(studio.media.stored_paths()) == []


def test_failed_commit_removes_newly_stored_file(studio: Studio, photos: dict[str, Path]) -> None:
    with studio.write() as session:
        session.add(Project(name="Taken", name_key="taken"))

    with (
        pytest.raises(IntegrityError, match=r"UNIQUE constraint failed: projects\.name_key"),
        studio.write() as session,
    ):
        stored = studio.store_image(session, check_image(photos["coffee"]))
        session.add(Project(name="TAKEN", name_key="taken"))  # fails when the block ends and flushes

    assert media_row(studio, stored.sha256) is None
    assert not stored.path.exists()


def test_failed_write_keeps_file_that_existed_before(studio: Studio, photos: dict[str, Path]) -> None:
    image = check_image(photos["astronaut"])
    with studio.write() as session:
        before = studio.store_image(session, image)
        add_reference(session, before, name="Ines")

    with pytest.raises(Boom), studio.write() as session:
        again = studio.store_image(session, image)
        add_reference(session, again, name="Oren")
        raise Boom

    assert again.created is False
    assert again.path == before.path
    assert before.path.read_bytes() == photos["astronaut"].read_bytes()
    assert media_row(studio, before.sha256) == ("png", before.byte_size)
    with studio.db.read() as session:
        assert session.scalars(select(Character.name)).all() == ["Ines"]
        assert verify(session, studio.media) == []


def test_failed_write_keeps_file_another_row_needs_even_if_recreated(studio: Studio, photos: dict[str, Path]) -> None:
    """A referenced file that had gone missing is stored again (created=True); a rollback must not remove it."""
    image = check_image(photos["chelsea"])
    with studio.write() as session:
        first = studio.store_image(session, image)
        add_reference(session, first, name="Ines")
    first.path.unlink()

    with pytest.raises(Boom), studio.write() as session:
        again = studio.store_image(session, image)
        raise Boom

    assert again.created is True
    assert again.path.read_bytes() == photos["chelsea"].read_bytes()
    with studio.db.read() as session:
        assert verify(session, studio.media) == []


def test_cleanup_during_open_transaction_keeps_deduplicated_file(studio: Studio, photos: dict[str, Path]) -> None:
    image = check_image(photos["coffee"])
    leftover = studio.media.put_file(image.path, image.extension)  # an earlier crash: renamed, never committed
    make_old(leftover.path)

    with studio.write() as session:
        stored = studio.store_image(session, image)
        add_reference(session, stored)
        assert stored.created is False
        # Another process cleans up while this transaction is still open (WAL: it reads the last commit).
        with studio.db.read() as other:
            remove_unrecorded_files(other, studio.media)

    with studio.db.read() as session:
        assert verify(session, studio.media) == []


def test_storing_the_same_bytes_over_a_damaged_copy_heals_it(studio: Studio, tmp_path: Path) -> None:
    """A copy damaged on disk at the same size used to stay damaged: the store compared sizes only."""
    store = studio.media
    data = bytes(range(256)) * 4_200  # more than one 1 MiB chunk is not needed: the hash covers every byte
    first = store.put_bytes(data, "png")
    with studio.db.write() as session:
        register(session, first)
    damaged = bytearray(data)
    damaged[1000] ^= 0x01
    first.path.write_bytes(bytes(damaged))  # same size, one bit off
    assert store.check(first.sha256, "png") == "hash mismatch"

    source = tmp_path / "original.png"
    source.write_bytes(data)
    healed = store.put_file(source, "png")

    assert healed.created is True  # the good bytes were written, not taken as already there
    assert healed.path == first.path and first.path.read_bytes() == data
    assert store.check(first.sha256, "png") is None
    assert part_files(store) == []
    with studio.db.read() as session:
        assert verify(session, store) == []
    again = store.put_bytes(data, "png")  # and an intact copy is still left as it is
    assert again.created is False


def test_an_intact_copy_is_kept_and_only_its_bytes_are_read(store: MediaStore) -> None:
    data = b"frame" * 1000
    first = store.put_bytes(data, "png")
    inode = first.path.stat().st_ino
    again = store.put_bytes(data, "png")
    assert again.created is False and first.path.stat().st_ino == inode  # not replaced
