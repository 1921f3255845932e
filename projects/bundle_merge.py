"""Merging a bundle into the project it came from: what the bundle holds that the project here lacks comes back.

Shots and characters are recognised across copies by their creation time (which copies keep), so a merge finds a
shot whose prompt or place changed, or a renamed character; takes by their video, seed and backend; drawn pictures
(keyframe candidates) by their frame (first or last), picture and seed. The sides parted when the later of the two
was unpacked from the other (its ``copied_at``): what the bundle holds from before then and this side lacks, this
side deleted since, and it stays deleted. :func:`merge_rows` writes within the caller's transaction, after
:func:`projects.bundle_reading.open_bundle` has checked the whole bundle.

Drawn pictures new here are numbered after the shot's own for their frame. The bundle's approved picture of a
frame (new here, or one both sides hold) becomes the shot's here only when the shot here has none approved for that
frame: an approval here is never replaced, and a shot whose approved picture differs from the bundle's is listed
(``keyframes_differing``), as an edited shot is. An approval withdrawn here since the copy cannot be told from one
made there, so it comes back with the merge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from projects import queries, shot_pictures
from projects.bundle_format import (
    FINISHED,
    link_sources,
    new_character,
    new_picture,
    new_reference,
    new_shot,
    new_take,
    parse_timestamp,
    picture_media,
    rows_of,
    take_media,
    timestamp,
)
from projects.bundle_reading import Bundle, store_media
from projects.errors import InvalidInput
from projects.storyboard import shift_positions
from projects.studio import Studio
from projects.takes import refresh_project_stale
from projects.validation import MAX_REFERENCES, name_key
from storage.models import Character, PictureTake, Project, Shot, Take


@dataclass(frozen=True)
class MergeResult:
    project: str
    project_id: int
    takes_added: int
    takes_already_there: int
    shots_unmatched: list[int]  # the bundle's shot numbers left out with their takes and pictures (``takes_only``)
    characters_added: int = 0
    references_added: int = 0
    shots_added: list[int] = field(default_factory=list)  # their numbers here, after the merge
    shots_differing: list[int] = field(default_factory=list)  # edited on either side: kept as they are here
    stayed_deleted: int = 0  # shots, takes, pictures, characters and references deleted here since the copy
    keyframes_added: int = 0  # drawn pictures (first- and last-frame candidates) new here
    keyframes_differing: list[int] = field(default_factory=list)  # approved picture differs: kept as it is here

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# What of a shot, when it differs between the two sides, means it was edited.
_SHOT_FIELDS = (
    "scene",
    "title",
    "prompt",
    "duration",
    "camera",
    "keyframe_sha256",
    "continue_from_previous",
    "last_frame_sha256",
    "last_frame_from_next",
    "cut_in",
    "cut_out",
    "cut_crossfade",
    "cut_title",
)


def _same_shot(home: Shot, row: dict[str, Any]) -> bool:
    mine = _shot_fields(home)
    theirs = {key: row.get(key) for key in _SHOT_FIELDS}
    theirs["keyframe_character"] = row.get("keyframe_character")
    theirs["characters"] = sorted(name_key(n) for n in row.get("characters", []))
    return mine == theirs


def _shot_fields(shot: Shot) -> dict[str, Any]:
    fields = {key: getattr(shot, key) for key in _SHOT_FIELDS}
    fields["keyframe_character"] = shot.keyframe_character.name if shot.keyframe_character else None
    fields["characters"] = sorted(character.name_key for character in shot.characters)
    return fields


def _match_shots(home: list[Shot], rows: list[dict[str, Any]]) -> list[Shot | None]:
    """For each of the bundle's shots, the same shot here, or None for a shot added there."""
    by_created: dict[str | None, list[Shot]] = {}
    for shot in home:
        by_created.setdefault(timestamp(shot.created_at), []).append(shot)
    taken: set[int] = set()
    found: list[Shot | None] = []
    for row in rows:
        created = row.get("created_at")
        if created:
            candidates = [s for s in by_created.get(str(created), []) if s.id not in taken]
        else:  # a bundle that does not say when its shots were made: by position and prompt
            candidates = [s for s in home if s.id not in taken and s.position == row.get("position")]
            candidates = [s for s in candidates if s.prompt == row.get("prompt")]
        candidates.sort(key=lambda s: (s.prompt != row.get("prompt"), s.position != row.get("position"), s.position))
        match = candidates[0] if candidates else None
        if match is not None:
            taken.add(match.id)
        found.append(match)
    return found


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def merge_rows(studio: Studio, session: Session, bundle: Bundle, project: Project, *, takes_only: bool) -> MergeResult:
    """Add to ``project`` what ``bundle`` holds that it lacks, as :func:`projects.bundles.merge_bundle` describes."""
    document = bundle.document
    # When the sides parted: a copy is dated by the snapshot it was unpacked from. Whatever either side held then,
    # and this side lacks now, this side deleted since. Every shot, character and reference goes into a bundle; a
    # take may not have (``takes``), so a take is judged only against the bundle's side's own copy time: all it
    # held from before then came from the original, which is here.
    there = _aware(parse_timestamp(document["project"].get("copied_at")))
    parted = max((t for t in (there, _aware(project.copied_at)) if t is not None), default=None)

    def deleted_here(row: dict[str, Any], before: datetime | None = parted) -> bool:
        """In the bundle, not here, and made before the sides parted: this side deleted it since."""
        made = _aware(parse_timestamp(row.get("created_at")))
        return before is not None and made is not None and made <= before

    stayed_deleted = 0
    # The bundle's characters by their name there, as characters here: the same character by creation time (so
    # a rename on either side is no new character), else by name.
    by_created = {timestamp(character.created_at): character for character in project.characters}
    by_name = {character.name_key: character for character in project.characters}
    characters: dict[str, Character] = {}
    shot_rows = rows_of(document, "shots")
    matches = _match_shots(sorted(project.shots, key=lambda shot: shot.position), shot_rows)

    # Plan first, so every file the new rows need is stored before a row refers to it.
    needed: set[str] = set()
    new_characters: list[dict[str, Any]] = []
    new_references: list[tuple[str, dict[str, Any]]] = []
    for row in rows_of(document, "characters"):
        key = name_key(row["name"])
        home = by_created.get(row.get("created_at")) or by_name.get(key)
        if home is not None:
            characters[key] = home
        if takes_only:
            continue
        if home is None and deleted_here(row):
            stayed_deleted += 1
            continue
        if home is None:
            new_characters.append(row)
        have = {ref.sha256 for ref in home.references} if home is not None else set()
        for ref in row.get("references", []):
            if ref["sha256"] in have:
                continue
            if deleted_here(ref):
                stayed_deleted += 1
                continue
            new_references.append((key, ref))
            needed.add(ref["sha256"])
            have.add(ref["sha256"])
        if len(have) > MAX_REFERENCES:
            raise InvalidInput(
                f"merging would give {row['name']} {len(have)} reference images; the limit is {MAX_REFERENCES}"
            )
    unmatched: list[int] = []
    differing: list[Shot] = []
    plan: list[tuple[int, dict[str, Any]]] = []  # (index of the shot row, take row)
    drawing: list[tuple[int, dict[str, Any]]] = []  # (index of the shot row, picture row) new here
    approvals: list[PictureTake] = []  # pictures here (matched, or new) that the bundle has approved
    already = 0
    existing_takes: dict[tuple[int, int], Take] = {}  # (bundle shot number, bundle take number) -> take here
    left_out: set[int] = set()  # shot rows deleted here: neither they nor their takes come back
    for index, (row, home) in enumerate(zip(shot_rows, matches, strict=True)):
        if home is None:
            if deleted_here(row):
                stayed_deleted += 1
                left_out.add(index)
                continue
            if takes_only:
                if row.get("takes") or row.get("pictures"):
                    unmatched.append(row.get("position"))
                continue
            needed.update(sha for sha in (row.get("keyframe_sha256"), row.get("last_frame_sha256")) if sha)
        elif not _same_shot(home, row):
            differing.append(home)
        here = {(take.video_sha256, take.seed, take.backend): take for take in home.takes} if home else {}
        for take_row in rows_of(row, "takes"):
            if take_row.get("status", "done") not in FINISHED:
                continue
            key = (take_row.get("video_sha256"), take_row["seed"], take_row["backend"])
            if key in here:
                already += 1
                existing_takes[(row.get("position"), take_row["take_number"])] = here[key]
            elif deleted_here(take_row, there):
                stayed_deleted += 1
            else:
                plan.append((index, take_row))
                needed.update(take_media(take_row))
        drawn = {(p.role, p.image_sha256, p.seed): p for p in home.pictures if p.image_sha256} if home else {}
        for picture_row in rows_of(row, "pictures"):
            found = drawn.get((picture_row["role"], picture_row["image_sha256"], picture_row["seed"]))
            if found is not None:
                if picture_row["approved"]:
                    approvals.append(found)
            elif deleted_here(picture_row, there):
                stayed_deleted += 1
            else:
                drawing.append((index, picture_row))
                needed.update(picture_media(picture_row))
    store_media(studio, session, bundle, needed)

    for row in new_characters:
        character = new_character(project, row)
        session.add(character)
        characters[name_key(row["name"])] = character
    session.flush()
    for key, ref in new_references:
        character = characters[key]
        position = max((r.position for r in character.references), default=-1) + 1
        character.references.append(new_reference(ref, position))
        session.flush()

    # Shots added there go in after the shot they follow there (or first).
    shots: list[Shot | None] = list(matches)
    added: list[Shot] = []
    previous: Shot | None = None
    for index, row in enumerate(shot_rows):
        if shots[index] is None and not takes_only and index not in left_out:
            position = previous.position + 1 if previous is not None else 1
            count = queries.shot_count(session, project.id)
            shift_positions(session, project.id, position, count, +1)
            shot = new_shot(project, row, position, characters)
            session.add(shot)
            session.flush()
            shots[index] = shot
            added.append(shot)
        if shots[index] is not None:
            previous = shots[index]

    made: dict[tuple[int, int], Take] = dict(existing_takes)
    pending: list[tuple[Take, Any]] = []
    for index, take_row in plan:
        shot = shots[index]
        if shot is None:
            continue
        number = max((take.take_number for take in shot.takes), default=0) + 1
        take = new_take(shot, take_row, number, characters)
        if take.approved and any(other.approved for other in shot.takes if other is not take):
            take.approved = False
        session.add(take)
        session.flush()
        made[(shot_rows[index].get("position"), take_row["take_number"])] = take
        pending.append((take, take_row.get("source_take")))
    link_sources(session, pending, made)

    keyframes_added = 0
    for index, picture_row in drawing:
        shot = shots[index]
        if shot is None:
            continue
        keyframes_added += 1
        number = max((p.number for p in shot.pictures if p.role == picture_row["role"]), default=0) + 1
        picture = new_picture(shot, picture_row, number, characters)
        picture.approved = False  # approved below, where the shot here has no approved picture of its frame
        session.add(picture)
        session.flush()
        if picture_row["approved"]:
            approvals.append(picture)
    keyframes_differing: set[int] = set()
    for picture in approvals:
        assert picture.shot is not None
        current = shot_pictures.approved_picture(session, picture.shot, picture.role)
        if current is None and picture.status == "done":
            picture.approved = True
            session.flush()
        elif current is not picture:
            keyframes_differing.add(picture.shot.position)
    refresh_project_stale(session, project.id)
    return MergeResult(
        project.name,
        project.id,
        len(pending),
        already,
        unmatched,
        characters_added=len(new_characters),
        references_added=len(new_references),
        shots_added=sorted(shot.position for shot in added),
        shots_differing=sorted(shot.position for shot in differing),
        stayed_deleted=stayed_deleted,
        keyframes_added=keyframes_added,
        keyframes_differing=sorted(keyframes_differing),
    )
