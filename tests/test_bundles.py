"""Project bundles both ways (pack, unpack elsewhere, render more, pack, merge back), and bad bundles refused."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from projects import bundle_format, bundle_reading, bundles, cast, keyframes, project, render_queue, storyboard, takes
from projects.errors import Conflict, InvalidInput
from projects.studio import Studio, open_studio
from projects.worker import RenderWorker
from storage import media as media_rows
from storage.migrate import head_revision
from storage.models import (
    Character,
    MediaObject,
    PictureInput,
    PictureTake,
    Project,
    ReferenceImage,
    Shot,
    Take,
    TakeInput,
)


def render_all(studio: Studio) -> int:
    with RenderWorker(studio, score=False) as worker:
        return worker.run(once=True)


def counts(studio: Studio) -> dict[str, int]:
    with studio.read() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Project, Character, ReferenceImage, Shot, Take, TakeInput, MediaObject)
        }


def media_hashes(studio: Studio) -> set[str]:
    with studio.read() as session:
        return set(session.scalars(select(MediaObject.sha256)))


def snapshot(studio: Studio) -> tuple[list[str], set[str], dict[str, int]]:
    names = [info.name for info in project.list_projects(studio)]
    return names, {p.name for p in studio.media.stored_paths()}, counts(studio)


def verified(studio: Studio) -> list:
    with studio.read() as session:
        return media_rows.verify(session, studio.media)


@pytest.fixture
def film(studio: Studio, photos: dict[str, Path]) -> Studio:
    project.create_project(studio, "Film", width=64, height=64, fps=8)
    cast.add_character(studio, "Film", "Mara", references=[photos["astronaut"]])
    storyboard.add_shot(studio, "Film", prompt="Mara climbs the stairs", duration=1.0, keyframe_character="Mara")
    storyboard.add_shot(studio, "Film", prompt="the lamp turns", duration=1.0)
    render_queue.queue_renders(studio, "Film", takes=2, seed=10)
    assert render_all(studio) == 4
    first = takes.list_takes(studio, "Film")
    takes.approve_take(studio, first.items[0].id)
    return studio


@pytest.fixture
def other(tmp_path: Path):
    opened = open_studio(tmp_path / "other")
    yield opened
    opened.close()


def members(path: Path) -> tuple[list[str], dict]:
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        return sorted(archive.namelist()), manifest


def test_pack_modes(film: Studio, tmp_path: Path) -> None:
    results = {}
    for mode in ("approved", "all", "none"):
        result = bundles.pack_project(film, "Film", tmp_path / f"{mode}.zip", takes=mode)
        names, manifest = members(result.path)
        results[mode] = (names, manifest)
        assert manifest["schema_revision"] == head_revision()
        assert manifest["project"] == "Film"
        assert manifest["counts"]["takes"] == {"approved": 1, "all": 4, "none": 0}[mode]
        assert manifest["counts"]["characters"] == 1 and manifest["counts"]["shots"] == 2
        assert "manifest.json" in names and "project.json" in names
        media = {f"media/{item['sha256']}.{item['extension']}" for item in manifest["media"]}
        assert media == {n for n in names if n.startswith("media/")}
        assert not list(tmp_path.glob("*.part"))
    none_media = set(results["none"][0])
    assert none_media < set(results["approved"][0]) < set(results["all"][0])
    with pytest.raises(InvalidInput, match="takes"):
        bundles.pack_project(film, "Film", tmp_path / "x.zip", takes="some")


def test_round_trip_and_merge(film: Studio, other: Studio, tmp_path: Path) -> None:
    packed = bundles.pack_project(film, "Film", tmp_path / "film.zip", takes="all")
    _, manifest = members(packed.path)
    restored = bundles.unpack_bundle(other, packed.path)
    assert restored.project == "Film"
    before = counts(film)
    after = counts(other)
    for table in ("projects", "characters", "reference_images", "shots", "takes", "take_inputs"):
        assert after[table] == before[table], table
    assert verified(other) == []
    assert media_hashes(other) == {item["sha256"] for item in manifest["media"]}
    assert media_hashes(other) <= media_hashes(film)
    with other.read() as session:
        approved = session.scalars(select(Take).where(Take.approved)).all()
        assert len(approved) == 1
        assert all(t.provenance and t.params for t in session.scalars(select(Take)))
        shot = session.scalar(select(Shot).where(Shot.position == 1))
        assert shot.keyframe_character is not None and shot.keyframe_character.name == "Mara"

    # Unpacking again is a clash that says what to do; --as gives another project.
    with pytest.raises(Conflict, match="--as"):
        bundles.unpack_bundle(other, packed.path)
    copy = bundles.unpack_bundle(other, packed.path, as_name="Film copy")
    assert copy.counts.takes == 4
    project.delete_project(other, "Film copy")

    # Render one more take there, pack, merge back.
    render_queue.queue_renders(other, "Film", shots=[2], seed=99)
    assert render_all(other) == 1
    back = bundles.pack_project(other, "Film", tmp_path / "back.zip", takes="all")
    assert back.counts.takes == 5
    merged = bundles.merge_bundle(film, back.path)
    assert (merged.takes_added, merged.takes_already_there) == (1, 4)
    after_merge = counts(film)
    assert after_merge["takes"] == before["takes"] + 1
    assert verified(film) == []
    with film.read() as session:
        keys = [(t.video_sha256, t.seed, t.backend) for t in session.scalars(select(Take))]
        assert len(keys) == len(set(keys))
        numbers = [t.take_number for t in session.scalars(select(Take).join(Shot).where(Shot.position == 2))]
        assert sorted(numbers) == [1, 2, 3]
    # Merging the same bundle again adds nothing.
    again = bundles.merge_bundle(film, back.path)
    assert again.takes_added == 0 and counts(film) == after_merge


@pytest.fixture
def edited_there(film: Studio, other: Studio, photos: dict[str, Path], tmp_path: Path) -> Path:
    """The film unpacked elsewhere and worked on there: a character and a shot added, a shot edited, rendered."""
    bundles.unpack_bundle(other, bundles.pack_project(film, "Film", tmp_path / "out.zip", takes="all").path)
    cast.add_character(other, "Film", "Oren", description="the ferryman", references=[photos["chelsea"]])
    mara = cast.list_characters(other, "Film")[0]
    cast.add_reference(other, mara.id, photos["rocket"])
    storyboard.add_shot(
        other, "Film", position=2, prompt="Oren rows in", duration=1.0, characters=["Oren"], keyframe_character="Oren"
    )
    lamp = storyboard.list_shots(other, "Film").items[2]
    storyboard.update_shot(other, lamp.id, prompt="the lamp turns, slowly")
    render_queue.queue_renders(other, "Film", shots=[2, 3], seed=50)
    assert render_all(other) == 2
    return bundles.pack_project(other, "Film", tmp_path / "back.zip", takes="all").path


def test_merge_brings_back_shots_and_characters_added_there(film: Studio, edited_there: Path) -> None:
    first, _ = storyboard.list_shots(film, "Film").items
    storyboard.update_shot(film, first.id, title="Arrival")  # edited here too, meanwhile
    before = counts(film)

    merged = bundles.merge_bundle(film, edited_there)
    assert (merged.characters_added, merged.references_added) == (1, 2)  # Oren's picture and Mara's new one
    assert merged.shots_added == [2] and merged.shots_unmatched == []
    # Shot 1 was edited here and the lamp shot there: both keep this side's version.
    assert merged.shots_differing == [1, 3]
    assert (merged.takes_added, merged.takes_already_there) == (2, 4)

    after = counts(film)
    assert (after["characters"], after["shots"], after["takes"]) == (2, 3, before["takes"] + 2)
    assert after["reference_images"] == before["reference_images"] + 2
    shots = storyboard.list_shots(film, "Film").items
    assert [s.prompt for s in shots] == ["Mara climbs the stairs", "Oren rows in", "the lamp turns"]
    assert shots[0].title == "Arrival"
    assert shots[1].characters == ("Oren",) and shots[1].keyframe.character == "Oren"
    # The take rendered there for the edited lamp shot is the lamp shot's third take here.
    lamp_takes = takes.list_takes(film, "Film", shot_number=3).items
    assert [t.take_number for t in lamp_takes] == [1, 2, 3] and lamp_takes[2].seed == 50
    assert lamp_takes[2].prompt == "the lamp turns, slowly"  # what it was rendered from, in its provenance
    (oren_take,) = takes.list_takes(film, "Film", shot_number=2).items
    assert oren_take.status == "done" and oren_take.seed == 50
    assert verified(film) == []

    # Merging the same bundle again adds nothing.
    again = bundles.merge_bundle(film, edited_there)
    assert (again.takes_added, again.characters_added, again.references_added, again.shots_added) == (0, 0, 0, [])
    assert counts(film) == after


def test_merge_takes_only_leaves_new_shots_and_characters_out(film: Studio, edited_there: Path) -> None:
    before = counts(film)
    merged = bundles.merge_bundle(film, edited_there, takes_only=True)
    assert merged.shots_unmatched == [2] and merged.shots_added == []
    assert (merged.characters_added, merged.references_added, merged.takes_added) == (0, 0, 1)
    after = counts(film)
    assert (after["characters"], after["shots"], after["takes"]) == (1, 2, before["takes"] + 1)
    assert after["reference_images"] == before["reference_images"]


def test_what_was_deleted_here_since_the_copy_stays_deleted(
    film: Studio, other: Studio, photos: dict[str, Path], tmp_path: Path
) -> None:
    mara = cast.list_characters(film, "Film")[0]
    extra = cast.add_reference(film, mara.id, photos["rocket"])
    bundles.unpack_bundle(other, bundles.pack_project(film, "Film", tmp_path / "out.zip", takes="all").path)
    # Here, after the copy: a shot, a take of another shot and a reference image deleted; the character renamed.
    _, second = storyboard.list_shots(film, "Film").items
    storyboard.delete_shot(film, second.id)
    unwanted = takes.list_takes(film, "Film", shot_number=1).items[1]
    takes.delete_take(film, unwanted.id)
    cast.remove_reference(film, extra.id)
    cast.update_character(film, mara.id, name="Mara Keel")
    # There: one more take of the first shot.
    render_queue.queue_renders(other, "Film", shots=[1], seed=77)
    assert render_all(other) == 1
    before = counts(film)

    merged = bundles.merge_bundle(film, bundles.pack_project(other, "Film", tmp_path / "back.zip", takes="all").path)
    assert merged.stayed_deleted == 3  # the shot (with its takes), the take, the reference image
    assert (merged.takes_added, merged.characters_added, merged.references_added) == (1, 0, 0)
    assert merged.shots_added == [] and merged.shots_unmatched == []
    after = counts(film)
    assert after["shots"] == before["shots"] == 1 and after["takes"] == before["takes"] + 1
    assert (after["characters"], after["reference_images"]) == (before["characters"], before["reference_images"])
    assert [c.name for c in cast.list_characters(film, "Film")] == ["Mara Keel"]  # matched, not doubled
    seeds = [t.seed for t in takes.list_takes(film, "Film", shot_number=1).items]
    assert unwanted.seed not in seeds and 77 in seeds
    assert verified(film) == []


def test_a_copy_merging_the_original_gets_the_takes_it_was_never_given(
    film: Studio, other: Studio, tmp_path: Path
) -> None:
    """A copy made with approved takes only lacks the others because they never came, not because it deleted them."""
    bundles.unpack_bundle(other, bundles.pack_project(film, "Film", tmp_path / "out.zip", takes="approved").path)
    assert counts(other)["takes"] == 1
    everything = bundles.pack_project(film, "Film", tmp_path / "all.zip", takes="all")
    merged = bundles.merge_bundle(other, everything.path)
    assert (merged.takes_added, merged.takes_already_there, merged.stayed_deleted) == (3, 1, 0)
    assert counts(other)["takes"] == counts(film)["takes"] == 4


def test_merge_refuses_another_project(film: Studio, other: Studio, tmp_path: Path) -> None:
    project.create_project(other, "Film")
    storyboard.add_shot(other, "Film", prompt="something else", duration=1.0)
    foreign = bundles.pack_project(other, "Film", tmp_path / "foreign.zip")
    before = snapshot(film)
    with pytest.raises(Conflict, match="did not come from"):
        bundles.merge_bundle(film, foreign.path)
    assert snapshot(film) == before


# Drawn keyframes travel with their shots: a shot unpacked elsewhere starts from the same picture.

PHOTOS = Path(__file__).with_name("photos")


def draw(studio: Studio) -> int:
    """Draw every queued keyframe candidate, scored as the studio scores them."""
    with RenderWorker(studio, device="cpu") as worker:
        return worker.run(once=True)


def drawn_pictures(studio: Studio) -> list[tuple]:
    """Every drawn picture of the project: shot, frame, number, approval, picture, seed, scores and provenance."""
    return [
        (p.shot_number, p.role, p.number, p.approved, p.sha256, p.seed, p.backend, p.scores, p.provenance)
        for p in keyframes.list_keyframes(studio, "Drawn")
    ]


def drawn_from(studio: Studio, project_id: int | None = None) -> list[tuple]:
    """The pictures every drawn picture was drawn from, by shot, frame and number, with their character's name."""
    query = (
        select(Shot.position, PictureTake.role, PictureTake.number, PictureInput.role, PictureInput.position)
        .add_columns(PictureInput.sha256, Character.name)
        .join(PictureTake, PictureTake.id == PictureInput.picture_take_id)
        .join(Shot, Shot.id == PictureTake.shot_id)
        .outerjoin(Character, Character.id == PictureInput.character_id)
        .order_by(Shot.position, PictureTake.role, PictureTake.number, PictureInput.position)
    )
    if project_id is not None:
        query = query.where(Shot.project_id == project_id)
    with studio.read() as session:
        return [tuple(row) for row in session.execute(query)]


@pytest.fixture
def drawn(studio: Studio, photos: dict[str, Path]) -> Studio:
    """Shot 1 has two drawn first-frame candidates, the second approved: its keyframe, over its uploaded picture of
    the place. Shot 2 has an approved drawn last frame; shot 3 an uploaded one."""
    project.create_project(studio, "Drawn", width=64, height=64, fps=8)
    cast.add_character(studio, "Drawn", "Mara", references=[PHOTOS / "obama-1.jpg"])
    storyboard.add_shot(
        studio, "Drawn", prompt="Mara walks in", duration=1.0, characters=["Mara"], keyframe=photos["coffee"]
    )
    storyboard.add_shot(studio, "Drawn", prompt="Mara turns", duration=1.0, characters=["Mara"])
    storyboard.add_shot(
        studio,
        "Drawn",
        prompt="the door closes",
        duration=1.0,
        keyframe=photos["chelsea"],
        last_frame=photos["rocket"],
    )
    keyframes.queue_keyframes(studio, "Drawn", shots=[1], candidates=2, seed=5)
    keyframes.queue_keyframes(studio, "Drawn", shots=[2], frames=("last",), candidates=1, seed=9)
    assert draw(studio) == 3
    _, second = keyframes.list_keyframes(studio, "Drawn", shot_number=1)
    keyframes.approve_keyframe(studio, second.id)
    (ending,) = keyframes.list_keyframes(studio, "Drawn", shot_number=2)
    keyframes.approve_keyframe(studio, ending.id)
    return studio


def test_a_bundle_carries_the_approved_drawn_pictures_whatever_takes_it_carries(drawn: Studio, tmp_path: Path) -> None:
    candidates = keyframes.list_keyframes(drawn, "Drawn")
    (unapproved,) = [p for p in candidates if not p.approved]
    approved = {p.sha256 for p in candidates if p.approved}
    uploaded_ending = storyboard.shot_number(drawn, "Drawn", 3).last_frame
    assert uploaded_ending.source == "image"
    for mode, expected in (("approved", 2), ("none", 2), ("all", 3)):
        packed = bundles.pack_project(drawn, "Drawn", tmp_path / f"{mode}.zip", takes=mode)
        _, manifest = members(packed.path)
        assert packed.counts.pictures == manifest["counts"]["pictures"] == expected
        with zipfile.ZipFile(packed.path) as archive:
            document = json.loads(archive.read("project.json"))
        rows = [
            (s["position"], p["role"], p["number"], p["approved"]) for s in document["shots"] for p in s["pictures"]
        ]
        kept = [(1, "first", 2, True), (2, "last", 1, True)]
        assert rows == ([(1, "first", 1, False), *kept] if mode == "all" else kept)
        media = {item["sha256"] for item in manifest["media"]}
        assert approved <= media and (unapproved.sha256 in media) == (mode == "all")
        assert uploaded_ending.sha256 in media  # an uploaded last frame travels too


def test_an_unpacked_shot_starts_from_the_same_drawn_keyframe(drawn: Studio, other: Studio, tmp_path: Path) -> None:
    before = [storyboard.shot_number(drawn, "Drawn", number) for number in (1, 2, 3)]
    assert before[0].keyframe.source == before[1].last_frame.source == "drawn"
    assert all(p[7].get("look") is not None for p in drawn_pictures(drawn))  # scored when drawn
    packed = bundles.pack_project(drawn, "Drawn", tmp_path / "drawn.zip", takes="all")
    restored = bundles.unpack_bundle(other, packed.path)
    assert restored.counts.pictures == 3
    for number, shot in enumerate(before, start=1):
        after = storyboard.shot_number(other, "Drawn", number)
        assert (after.keyframe.source, after.keyframe.sha256) == (shot.keyframe.source, shot.keyframe.sha256)
        assert (after.last_frame.source, after.last_frame.sha256) == (shot.last_frame.source, shot.last_frame.sha256)
        assert (after.keyframe_candidates, after.stale) == (shot.keyframe_candidates, shot.stale)
    # The candidates as they were: numbers, approvals, pictures, seeds, scores, provenance, what they were drawn from.
    assert drawn_pictures(other) == drawn_pictures(drawn)
    assert drawn_from(other) == drawn_from(drawn) != []
    assert verified(other) == []

    # With the approved takes only (the default), the approved pictures still come: the keyframe is the same.
    approved = bundles.pack_project(drawn, "Drawn", tmp_path / "approved.zip")
    copy = bundles.unpack_bundle(other, approved.path, as_name="Approved")
    assert copy.counts.pictures == 2
    first = storyboard.shot_number(other, "Approved", 1).keyframe
    assert (first.source, first.sha256) == ("drawn", before[0].keyframe.sha256)
    assert [(p.number, p.approved) for p in keyframes.list_keyframes(other, "Approved", shot_number=1)] == [(2, True)]
    came = [row for row in drawn_from(drawn) if row[:3] in ((1, "first", 2), (2, "last", 1))]
    assert drawn_from(other, copy.project_id) == came != []


def test_a_bundle_from_before_drawn_pictures_travelled_still_unpacks(
    drawn: Studio, other: Studio, tmp_path: Path
) -> None:
    """Bundles of revision 0007 know no drawn pictures or last frames; those written at 0008 before the pictures
    travelled have none either. Both unpack, their shots starting from their own pictures."""
    packed = bundles.pack_project(drawn, "Drawn", tmp_path / "drawn.zip", takes="all").path

    def written_at(revision: str):
        def step(info: zipfile.ZipInfo, data: bytes):
            if info.filename == "project.json":
                document = json.loads(data)
                for shot in document["shots"]:
                    del shot["pictures"]
                    if revision == "0007":
                        del shot["last_frame_sha256"], shot["last_frame_from_next"]
                data = json.dumps(document).encode()
            return stamped(revision)(info, data)

        return step

    for revision in ("0007", "0008"):
        old = rewrite(packed, tmp_path / f"{revision}.zip", written_at(revision))
        result = bundles.unpack_bundle(other, old, as_name=f"Drawn {revision}")
        assert (result.schema_revision, result.counts.shots, result.counts.pictures) == (revision, 3, 0)
        first = storyboard.shot_number(other, result.project_id, 1)
        assert (first.keyframe.source, first.keyframe_candidates) == ("image", 0)
        ending = storyboard.shot_number(other, result.project_id, 3).last_frame.source
        assert ending == ("none" if revision == "0007" else "image")
    assert verified(other) == []


def test_candidates_drawn_on_a_copy_merge_back(drawn: Studio, other: Studio, tmp_path: Path) -> None:
    bundles.unpack_bundle(other, bundles.pack_project(drawn, "Drawn", tmp_path / "out.zip", takes="all").path)
    # There: two more candidates of shot 1's first frame, the last approved; shot 2's first frame drawn, approved.
    keyframes.queue_keyframes(other, "Drawn", shots=[1], candidates=2, seed=20)
    keyframes.queue_keyframes(other, "Drawn", shots=[2], candidates=1, seed=30)
    assert draw(other) == 3
    there = {(p.shot_number, p.role, p.number): p for p in keyframes.list_keyframes(other, "Drawn")}
    keyframes.approve_keyframe(other, there[(1, "first", 4)].id)
    keyframes.approve_keyframe(other, there[(2, "first", 1)].id)
    # Here, meanwhile: one more candidate of shot 1, and its approved keyframe stays the second.
    keyframes.queue_keyframes(drawn, "Drawn", shots=[1], candidates=1, seed=40)
    assert draw(drawn) == 1
    kept = storyboard.shot_number(drawn, "Drawn", 1).keyframe
    back = bundles.pack_project(other, "Drawn", tmp_path / "back.zip", takes="all").path

    merged = bundles.merge_bundle(drawn, back)
    assert merged.keyframes_added == 3
    assert merged.keyframes_differing == [1]  # approved there, another approved here: this side's kept
    assert merged.to_json()["keyframes_added"] == 3
    here = {(p.shot_number, p.role, p.number): p for p in keyframes.list_keyframes(drawn, "Drawn")}
    assert sorted(here) == [(1, "first", n) for n in range(1, 6)] + [(2, "first", 1), (2, "last", 1)]
    for mine, theirs in (
        ((1, "first", 4), (1, "first", 3)),
        ((1, "first", 5), (1, "first", 4)),
        ((2, "first", 1),) * 2,
    ):
        assert (here[mine].sha256, here[mine].seed, here[mine].scores) == (
            there[theirs].sha256,
            there[theirs].seed,
            there[theirs].scores,
        )
    assert [n for (shot, role, n), p in here.items() if p.approved] == [2, 1, 1]
    first = storyboard.shot_number(drawn, "Drawn", 1).keyframe
    assert (first.source, first.sha256) == (kept.source, kept.sha256)
    second = storyboard.shot_number(drawn, "Drawn", 2).keyframe
    assert (second.source, second.sha256) == ("drawn", there[(2, "first", 1)].sha256)  # none was approved here
    assert verified(drawn) == []

    again = bundles.merge_bundle(drawn, back)
    assert (again.keyframes_added, again.keyframes_differing, again.stayed_deleted) == (0, [1], 0)
    assert len(keyframes.list_keyframes(drawn, "Drawn")) == len(here)


def test_a_candidate_approved_there_becomes_the_keyframe_where_none_is_approved(
    drawn: Studio, other: Studio, tmp_path: Path
) -> None:
    bundles.unpack_bundle(other, bundles.pack_project(drawn, "Drawn", tmp_path / "out.zip", takes="all").path)
    first, second = keyframes.list_keyframes(other, "Drawn", shot_number=1)
    keyframes.approve_keyframe(other, first.id)  # there: the other candidate, which both sides hold
    keyframes.unapprove_keyframe(drawn, keyframes.list_keyframes(drawn, "Drawn", shot_number=1)[1].id)
    assert storyboard.shot_number(drawn, "Drawn", 1).keyframe.source == "image"  # here: back to the upload
    merged = bundles.merge_bundle(drawn, bundles.pack_project(other, "Drawn", tmp_path / "back.zip").path)
    assert (merged.keyframes_added, merged.keyframes_differing) == (0, [])
    keyframe = storyboard.shot_number(drawn, "Drawn", 1).keyframe
    assert (keyframe.source, keyframe.sha256) == ("drawn", first.sha256) != ("drawn", second.sha256)
    assert [p.approved for p in keyframes.list_keyframes(drawn, "Drawn", shot_number=1)] == [True, False]


# Bad bundles.


def rewrite(source: Path, target: Path, change) -> Path:
    """Copy a bundle member by member, letting ``change(info, data)`` return replacements (or None to drop)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            for item in change(info, data) or []:
                new_info, new_data = item
                out.writestr(new_info, new_data)
    return target


@pytest.fixture
def good(film: Studio, tmp_path: Path) -> Path:
    return bundles.pack_project(film, "Film", tmp_path / "good.zip", takes="approved").path


def refuse(target: Studio, bundle: Path, message: str, error: type = InvalidInput) -> None:
    before = snapshot(target)
    with pytest.raises(error, match=message):
        bundles.unpack_bundle(target, bundle)
    assert snapshot(target) == before
    assert list(target.media.temp_dir.iterdir()) == []


def test_not_a_zip(other: Studio, tmp_path: Path) -> None:
    path = tmp_path / "notes.zip"
    path.write_text("hello")
    refuse(other, path, "not a zip file")


def test_truncated(other: Studio, good: Path, tmp_path: Path) -> None:
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 30):
        path = tmp_path / f"cut{cut}.zip"
        path.write_bytes(data[:cut])
        refuse(other, path, "truncated")


def test_wrong_hash(other: Studio, good: Path, tmp_path: Path) -> None:
    def corrupt(info: zipfile.ZipInfo, data: bytes):
        if info.filename.startswith("media/") and info.filename.endswith(".mp4"):
            data = data[:-1] + bytes([data[-1] ^ 1])
        return [(info, data)]

    refuse(other, rewrite(good, tmp_path / "bad.zip", corrupt), "damaged")


def test_manifest_size_mismatch(other: Studio, good: Path, tmp_path: Path) -> None:
    def lie(info: zipfile.ZipInfo, data: bytes):
        if info.filename == "manifest.json":
            manifest = json.loads(data)
            manifest["media"][0]["size"] += 1
            data = json.dumps(manifest).encode()
        return [(info, data)]

    refuse(other, rewrite(good, tmp_path / "lie.zip", lie), "manifest.json says")


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "media\\evil.png", "C:/evil.png", "media/../../x"])
def test_escaping_names(other: Studio, good: Path, tmp_path: Path, name: str) -> None:
    def add(info: zipfile.ZipInfo, data: bytes):
        extra = [(zipfile.ZipInfo(name), b"x")] if info.filename == "manifest.json" else []
        return [(info, data), *extra]

    refuse(other, rewrite(good, tmp_path / "escape.zip", add), r"unsafe path|escapes")


def test_symlink(other: Studio, good: Path, tmp_path: Path) -> None:
    def add(info: zipfile.ZipInfo, data: bytes):
        if info.filename != "manifest.json":
            return [(info, data)]
        link = zipfile.ZipInfo("media/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        return [(info, data), (link, b"/etc/passwd")]

    refuse(other, rewrite(good, tmp_path / "link.zip", add), "symbolic link")


def test_zip_bomb(other: Studio, good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def add(info: zipfile.ZipInfo, data: bytes):
        if info.filename != "project.json":
            return [(info, data)]
        zeros = zipfile.ZipInfo("media/" + "0" * 64 + ".png")
        zeros.compress_type = zipfile.ZIP_DEFLATED
        return [(info, data), (zeros, bytes(20 << 20))]

    refuse(other, rewrite(good, tmp_path / "bomb.zip", add), "compressed more than 1000:1")
    monkeypatch.setattr(bundle_reading, "MAX_TOTAL_BYTES", 4096)
    refuse(other, good, "would unpack to more than")


def test_member_larger_than_declared(good: Path) -> None:
    """A member holding more bytes than its header declares is cut off, not trusted."""
    with zipfile.ZipFile(good) as archive:
        member = archive.getinfo("project.json")
        member.file_size = 10
        with pytest.raises(InvalidInput, match=r"more bytes than it declares|cannot be read"):
            bundle_reading.read_member(archive, member, good, io.BytesIO())


def stamped(revision: object):
    """A rewrite step that makes the manifest name ``revision`` as the schema the bundle was written at."""

    def step(info: zipfile.ZipInfo, data: bytes):
        if info.filename == "manifest.json":
            manifest = json.loads(data)
            manifest["schema_revision"] = revision
            data = json.dumps(manifest).encode()
        return [(info, data)]

    return step


def test_newer_schema(other: Studio, good: Path, tmp_path: Path) -> None:
    refuse(other, rewrite(good, tmp_path / "newer.zip", stamped("ffffffffffff")), "newer version of Continuity")


def test_older_bundle_without_optional_fields(other: Studio, good: Path, tmp_path: Path) -> None:
    """Rows are read by field name with defaults, so a bundle missing newer fields still loads."""

    def older(info: zipfile.ZipInfo, data: bytes):
        if info.filename == "project.json":
            document = json.loads(data)
            for shot in document["shots"]:
                shot.pop("stale")
                shot.pop("camera")
                for take in shot["takes"]:
                    take.pop("scores")
                    take.pop("source_take")
            data = json.dumps(document).encode()
        return [(info, data)]

    result = bundles.unpack_bundle(other, rewrite(good, tmp_path / "older.zip", older))
    assert result.counts.shots == 2 and result.counts.takes == 1
    assert verified(other) == []


def test_bundle_from_an_older_schema_revision_is_upgraded(other: Studio, good: Path, tmp_path: Path) -> None:
    """A bundle written at revision 0002 has no chaining, take inputs or scores (0003, 0004 added them)."""

    def at_0002(info: zipfile.ZipInfo, data: bytes):
        if info.filename == "manifest.json":
            return stamped("0002")(info, data)
        if info.filename == "project.json":
            document = json.loads(data)
            for shot in document["shots"]:
                del shot["stale"]
                for take in shot["takes"]:
                    del take["source_take"], take["inputs"], take["scores"]
            data = json.dumps(document).encode()
        return [(info, data)]

    result = bundles.unpack_bundle(other, rewrite(good, tmp_path / "0002.zip", at_0002))
    assert result.schema_revision == "0002"
    assert (result.counts.shots, result.counts.takes) == (2, 1)
    with other.read() as session:
        assert session.scalar(select(func.count()).select_from(TakeInput)) == 0
        assert not any(session.scalars(select(Shot.stale)))
    (take,) = takes.list_takes(other, result.project_id).items
    assert take.approved and take.status == "done"
    assert verified(other) == []

    assert bundle_format.upgrade_document({"project": {}, "shots": []}, "0001") == [
        "0003",
        "0004",
        "0006",
        "0007",
        "0008",
        "0009",
    ]
    assert bundle_format.upgrade_document({"project": {}, "shots": []}, "0004") == ["0006", "0007", "0008", "0009"]
    assert bundle_format.upgrade_document({"project": {}, "shots": []}, head_revision()) == []
    # A bundle from before 0007 carries the look descriptor's score as identity: it arrives as look.
    scores = [
        {"embedder": "offline-colour-texture-v1", "metric": "identity", "value": 0.6},
        {"embedder": "offline-colour-texture-v1+arcface:w600k", "metric": "identity", "value": 0.8},
    ]
    document = {"project": {}, "shots": [{"takes": [{"scores": scores}]}]}
    assert bundle_format.upgrade_document(document, "0006") == ["0007", "0008", "0009"]
    assert [score["metric"] for score in scores] == ["look", "identity"]


@pytest.mark.parametrize("revision", [None, "", ["0004"], 4])
def test_manifest_without_a_schema_revision(other: Studio, good: Path, tmp_path: Path, revision: object) -> None:
    refuse(other, rewrite(good, tmp_path / "unnamed.zip", stamped(revision)), "names no schema revision")


def test_bad_rows_leave_target_unchanged(other: Studio, good: Path, tmp_path: Path) -> None:
    def broken(info: zipfile.ZipInfo, data: bytes):
        if info.filename == "project.json":
            document = json.loads(data)
            document["shots"][1]["duration"] = -1
            data = json.dumps(document).encode()
        return [(info, data)]

    refuse(other, rewrite(good, tmp_path / "rows.zip", broken), r"shot 2\.duration: must be more than 0 seconds")


def test_pack_and_unpack_commands(film: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from app.cli import main

    bundle = tmp_path / "film.zip"
    home, away = str(film.data_dir), str(tmp_path / "away")
    assert main(["pack", "Film", str(bundle), "--takes", "all", "--json", "--data-dir", home]) == 0
    packed = json.loads(capsys.readouterr().out)
    assert packed["counts"]["takes"] == counts(film)["takes"] and bundle.is_file()
    assert main(["unpack", str(bundle), "--json", "--data-dir", away]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == packed["counts"]
    assert main(["unpack", str(bundle), "--data-dir", away]) == 1
    assert "--as" in capsys.readouterr().err
    assert main(["unpack", str(bundle), "--merge", "--json", "--data-dir", away]) == 0
    assert json.loads(capsys.readouterr().out)["takes_added"] == 0
    assert main(["unpack", str(bundle), "--takes-only", "--data-dir", away]) == 1
    assert "--takes-only: only applies when merging" in capsys.readouterr().err


def test_merge_command_reports_what_came_back(
    film: Studio, edited_there: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from app.cli import main

    assert main(["unpack", str(edited_there), "--merge", "--json", "--data-dir", str(film.data_dir)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "project": "Film",
        "project_id": 1,
        "takes_added": 2,
        "takes_already_there": 4,
        "shots_unmatched": [],
        "characters_added": 1,
        "references_added": 2,
        "shots_added": [2],
        "shots_differing": [3],
        "stayed_deleted": 0,
        "keyframes_added": 0,
        "keyframes_differing": [],
    }
    assert main(["unpack", str(edited_there), "--merge", "--data-dir", str(film.data_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "merged into 'Film': 0 new take(s)",
        ("shots [3] differ from the bundle's: kept as they are here"),
    ]


# A merge needs to know where the bundle came from.


def without_origin(info: zipfile.ZipInfo, data: bytes):
    if info.filename == "manifest.json":
        manifest = json.loads(data)
        del manifest["origin"]
        data = json.dumps(manifest).encode()
    return [(info, data)]


def test_merge_of_a_bundle_that_does_not_say_where_it_came_from_needs_force(
    film: Studio, other: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    bundles.unpack_bundle(other, bundles.pack_project(film, "Film", tmp_path / "out.zip").path)
    render_queue.queue_renders(other, "Film", shots=[2], seed=99)
    assert render_all(other) == 1
    back = bundles.pack_project(other, "Film", tmp_path / "back.zip", takes="all").path
    anonymous = rewrite(back, tmp_path / "anonymous.zip", without_origin)
    before = snapshot(film)
    with pytest.raises(Conflict, match=r"does not say which project it came from.*force"):
        bundles.merge_bundle(film, anonymous)
    assert snapshot(film) == before
    home = ["--data-dir", str(film.data_dir)]
    assert main(["unpack", str(anonymous), "--merge", *home]) == 1
    assert "--force" in capsys.readouterr().err
    assert snapshot(film) == before

    assert main(["unpack", str(anonymous), "--merge", "--force", "--json", *home]) == 0
    assert json.loads(capsys.readouterr().out)["takes_added"] == 1
    assert verified(film) == []


def test_merge_of_another_projects_bundle_needs_force(film: Studio, other: Studio, tmp_path: Path) -> None:
    project.create_project(other, "Film")
    storyboard.add_shot(other, "Film", prompt="something else", duration=1.0)
    foreign = bundles.pack_project(other, "Film", tmp_path / "foreign.zip").path
    with pytest.raises(Conflict, match="force"):
        bundles.merge_bundle(film, foreign)
    merged = bundles.merge_bundle(film, foreign, force=True)
    assert merged.shots_added == [1]  # first there, so first here


# Packing never writes over what it should not.


def test_pack_never_writes_over_the_studios_own_files(film: Studio, tmp_path: Path) -> None:
    database = film.data_dir / "continuity.db"
    outside_link = tmp_path / "innocent.zip"
    outside_link.symlink_to(database)
    before = database.read_bytes()
    owned = (database, film.data_dir / "continuity.db-wal", film.data_dir / "media" / "x.zip", outside_link)
    for target in owned:
        with pytest.raises(InvalidInput, match="one of the studio's own files"):
            bundles.pack_project(film, "Film", target, overwrite=True)
    assert database.read_bytes() == before
    assert not (film.data_dir / "media" / "x.zip").exists()
    assert [p.name for p in project.list_projects(film)] == ["Film"]
    beside = bundles.pack_project(film, "Film", film.data_dir / "film.zip")  # a bundle kept with the studio is fine
    assert beside.path.is_file()


def test_pack_refuses_an_existing_file_unless_told_to_overwrite(
    film: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    notes = tmp_path / "notes.zip"
    notes.write_text("three years of notes")
    with pytest.raises(Conflict, match=r"already exists.*overwrite"):
        bundles.pack_project(film, "Film", notes)
    assert notes.read_text() == "three years of notes"
    home = ["--data-dir", str(film.data_dir)]
    assert main(["pack", "Film", str(notes), *home]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert notes.read_text() == "three years of notes"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []

    assert main(["pack", "Film", str(notes), "--overwrite", *home]) == 0
    assert zipfile.is_zipfile(notes)
    replaced = bundles.pack_project(film, "Film", notes, overwrite=True)
    assert replaced.path == notes.resolve() and members(notes)[1]["project"] == "Film"


# A process killed mid-unpack or mid-merge leaves nothing behind once the data directory is opened again.

KILLED_MID_WRITE = r"""
import sys, time
from pathlib import Path

from projects import bundle_merge, bundles
from projects.studio import open_studio

data, bundle, operation, ready = sys.argv[1:5]


def store_then_hang(store_media):
    def step(*args, **kwargs):
        created = store_media(*args, **kwargs)
        Path(ready).write_text(str(created))  # the files are in the store; the rows are not committed
        time.sleep(600)
        return created

    return step


bundles.store_media = store_then_hang(bundles.store_media)
bundle_merge.store_media = store_then_hang(bundle_merge.store_media)
studio = open_studio(data)
if operation == "unpack":
    bundles.unpack_bundle(studio, bundle)
else:
    bundles.merge_bundle(studio, bundle, "Film")
"""


def unrecorded(studio: Studio) -> set[str]:
    return {path.name for path in studio.media.stored_paths() if path.stem not in media_hashes(studio)}


@pytest.mark.parametrize("operation", ["unpack", "merge"])
def test_a_kill_mid_unpack_or_merge_leaves_no_file_once_opened_again(
    film: Studio, edited_there: Path, tmp_path: Path, operation: str
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    data = film.data_dir if operation == "merge" else tmp_path / "fresh"
    target = open_studio(data)
    before = counts(target)
    ready = tmp_path / "ready"
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_WRITE, str(data), str(edited_there), operation, str(ready)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert process.poll() is None, process.communicate()[1].decode()
            assert time.monotonic() < deadline, "the unpack never reached the store"
            time.sleep(0.05)
        assert int(ready.read_text()) > 0
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # As the kill left it: files in the store that no row names, and the bundle's extracted media.
    assert unrecorded(target) != set()
    assert list(target.media.temp_dir.iterdir()) != []
    target.close()

    reopened = open_studio(data)
    try:
        assert unrecorded(reopened) == set()
        assert list(reopened.media.temp_dir.iterdir()) == []
        assert counts(reopened) == before
        assert verified(reopened) == []  # no file a committed row names was taken
        if operation == "merge":
            assert bundles.merge_bundle(reopened, edited_there).takes_added == 2
        else:
            assert bundles.unpack_bundle(reopened, edited_there).counts.takes == 6
        assert verified(reopened) == []
    finally:
        reopened.close()


def test_an_unpack_in_progress_keeps_its_files_when_another_process_opens_the_studio(film: Studio) -> None:
    """Only the staging folder of a process that died is cleaned up: a live one holds its lock."""
    from projects.staging import staging_folder

    with staging_folder(film.media) as folder:
        (folder / f"{'a' * 64}.png").write_bytes(b"not yet stored")
        open_studio(film.data_dir).close()
        assert (folder / f"{'a' * 64}.png").is_file()
    assert list(film.media.temp_dir.iterdir()) == []
