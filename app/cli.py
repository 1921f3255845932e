"""The command line: ``python app.py [COMMAND] ...``.

With no command it starts the studio in the browser. Every command takes ``--data-dir DIR`` (or the
``CONTINUITY_DATA`` variable) and most take ``--json``, whose output shapes are a stable contract
documented in README.md. Errors go to standard error as one readable line and exit with status 1 (with
``--json``, an ``{"error": ...}`` object goes to standard output as well); usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from projects import bundles, cast, export, project, render, scoring, storyboard, takes
from projects.backends import available_backends, fetch_weights, weight_names
from projects.errors import InvalidInput, StudioError
from projects.maintenance import verify_media
from projects.storyboard_file import import_storyboard
from projects.studio import DATA_ENV, Studio, open_studio
from projects.waiting import wait_for_jobs
from projects.worker import RenderWorker

log = logging.getLogger(__name__)

Handler = Callable[[Studio, argparse.Namespace], Any]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help=f"data directory (default: ${DATA_ENV}, else ./continuity-data)",
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")

    parser = argparse.ArgumentParser(
        prog="app.py",
        description="Continuity: a studio for long-form AI video with consistent characters.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="start the studio in the browser (the default)")
    add_serve_options(serve)

    proj = commands.add_parser("project", parents=[common], help="create, list, rename or delete projects")
    proj_commands = proj.add_subparsers(dest="project_command", metavar="ACTION", required=True)
    create = proj_commands.add_parser("create", parents=[common], help="create an empty project")
    create.add_argument("name")
    create.add_argument("--width", type=int, default=project.DEFAULT_WIDTH)
    create.add_argument("--height", type=int, default=project.DEFAULT_HEIGHT)
    create.add_argument("--fps", type=int, default=project.DEFAULT_FPS)
    create.set_defaults(handler=_project_create)
    listing = proj_commands.add_parser("list", parents=[common], help="list projects")
    listing.set_defaults(handler=_project_list)
    rename = proj_commands.add_parser("rename", parents=[common], help="rename a project")
    rename.add_argument("project")
    rename.add_argument("new_name")
    rename.set_defaults(handler=_project_rename)
    delete = proj_commands.add_parser("delete", parents=[common], help="delete a project and all its takes")
    delete.add_argument("project")
    delete.add_argument("--yes", action="store_true", help="confirm: the project cannot be recovered")
    delete.set_defaults(handler=_project_delete)

    imp = commands.add_parser("import", parents=[common], help="import a storyboard file (.json or .csv)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--project", help="project name (default: the file's 'project', else the file name)")
    imp.set_defaults(handler=_import)

    chars = commands.add_parser("characters", parents=[common], help="list a project's cast")
    chars.add_argument("project")
    chars.set_defaults(handler=_characters)
    char = commands.add_parser("character", parents=[common], help="add a character to a project")
    char_commands = char.add_subparsers(dest="character_command", metavar="ACTION", required=True)
    char_add = char_commands.add_parser("add", parents=[common], help="add a character with reference images")
    char_add.add_argument("project")
    char_add.add_argument("name")
    char_add.add_argument("--description", default="")
    char_add.add_argument("--reference", type=Path, action="append", default=[], help="an image (repeatable)")
    char_add.set_defaults(handler=_character_add)

    shots = commands.add_parser("shots", parents=[common], help="list a project's shots in storyboard order")
    shots.add_argument("project")
    add_paging(shots)
    shots.set_defaults(handler=_shots)

    take_list = commands.add_parser("takes", parents=[common], help="list a project's takes")
    take_list.add_argument("project")
    take_list.add_argument("--shot", type=int, help="only this shot number")
    take_list.add_argument("--status", help="only takes with this status")
    add_paging(take_list)
    take_list.set_defaults(handler=_takes)

    status = commands.add_parser("status", parents=[common], help="shots, approvals and takes at a glance")
    status.add_argument("project")
    status.set_defaults(handler=_status)

    approve = commands.add_parser("approve", parents=[common], help="approve a take for its shot")
    approve.add_argument("take_id", type=int)
    approve.set_defaults(handler=_approve)

    render = commands.add_parser("render", parents=[common], help="queue takes (and with --wait, render them)")
    render.add_argument("project")
    which = render.add_mutually_exclusive_group()
    which.add_argument("--shot", type=int, help="one shot, by number")
    which.add_argument("--shots", help="a range of shots, A-B")
    which.add_argument("--all", action="store_true", help="every shot (the default)")
    render.add_argument("--takes", type=int, default=1, help="takes per shot (default 1)")
    render.add_argument("--backend", default="animatic", help="which backend (see 'backends'; default animatic)")
    render.add_argument("--seed", type=int, help="first seed (later takes count up); random if not given")
    render.add_argument("--steps", type=int, help="denoising steps (the backend's default if not given)")
    render.add_argument("--guidance", type=float, help="guidance scale (the backend's default if not given)")
    render.add_argument("--refiner", action="store_true", help="run the backend's refiner after stage 1")
    render.add_argument("--priority", type=int, default=0, help="higher runs sooner (default 0)")
    render.add_argument("--wait", action="store_true", help="render now, in this process, and wait for the takes")
    render.set_defaults(handler=_render)

    again = commands.add_parser("rerender", parents=[common], help="render a take again, exactly as it was made")
    again.add_argument("take_id", type=int)
    again.add_argument("--wait", action="store_true", help="render now and wait")
    again.set_defaults(handler=_rerender)

    worker = commands.add_parser("worker", parents=[common], help="render queued takes until stopped")
    worker.add_argument("--once", action="store_true", help="stop when the queue is empty")
    worker.add_argument("--device", default="cpu", help="cpu or cuda (or cuda:N); one worker per device")
    worker.set_defaults(handler=_worker)

    queue = commands.add_parser("queue", parents=[common], help="the render queue of a project")
    queue.add_argument("project")
    queue.set_defaults(handler=_queue)

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    cancel.add_argument("job_id", type=int)
    cancel.set_defaults(handler=_cancel)

    retry = commands.add_parser("retry", parents=[common], help="queue a failed or cancelled job again")
    retry.add_argument("job_id", type=int)
    retry.set_defaults(handler=_retry)

    score = commands.add_parser("score", parents=[common], help="consistency scores of a project's takes")
    score.add_argument("project")
    score.add_argument("--shot", type=int, help="only this shot number")
    score.add_argument(
        "--embedder", help="'offline' (default, or $CONTINUITY_EMBEDDER) or a CLIP/DINOv2/SigLIP folder or hub id"
    )
    score.add_argument("--rescore", action="store_true", help="compute again even where scores exist")
    score.set_defaults(handler=_score)

    pack = commands.add_parser("pack", parents=[common], help="pack a project (rows and media) into a zip bundle")
    pack.add_argument("project")
    pack.add_argument("bundle", type=Path)
    pack.add_argument("--takes", choices=["approved", "all", "none"], default="approved", help="which takes go in")
    pack.set_defaults(handler=_pack)

    unpack = commands.add_parser("unpack", parents=[common], help="restore a bundle, or merge it back with --merge")
    unpack.add_argument("bundle", type=Path)
    unpack.add_argument("--as", dest="as_name", help="the project's name here (when the bundle's name is taken)")
    unpack.add_argument(
        "--merge",
        action="store_true",
        help="bring the bundle's new takes, shots and characters back into the project it came from",
    )
    unpack.add_argument("--takes-only", action="store_true", help="with --merge: only takes of shots this project has")
    unpack.set_defaults(handler=_unpack)

    backends = commands.add_parser("backends", parents=[common], help="list video backends and whether each can run")
    backends.set_defaults(handler=_backends)

    weights = commands.add_parser(
        "fetch-weights",
        parents=[common],
        help="link a model folder, or download a Hugging Face repo (safetensors only), where a backend looks",
    )
    weights.add_argument("backend", help=f"one of: {', '.join(weight_names())}")
    weights.add_argument("source", help="a diffusers model folder on this machine, or a Hugging Face repo id")
    weights.add_argument("--revision", help="a branch, tag or commit of the repo (pin it for reproducible takes)")
    weights.set_defaults(handler=_fetch_weights)

    verify = commands.add_parser("verify", parents=[common], help="re-hash every stored media file")
    verify.set_defaults(handler=_verify)

    exporting = commands.add_parser(
        "export", parents=[common], help="export the approved takes as a film, a timeline and a contact sheet"
    )
    exporting.add_argument("project")
    exporting.add_argument("--out", type=Path, required=True, help="the film (.mp4)")
    exporting.add_argument(
        "--timeline", type=Path, help="also a timeline: .otio, .xml (FCP 7), .edl (CMX 3600) or .kdenlive"
    )
    exporting.add_argument("--crossfade", type=float, default=0.0, help="seconds of dissolve at every join")
    exporting.add_argument(
        "--titles", action="store_true", help="title cards: the project's name, then where each scene begins"
    )
    exporting.add_argument("--audio", type=Path, help="a music track, looped or cut to the film, faded out")
    exporting.add_argument("--contact-sheet", type=Path, help="also a storyboard contact sheet (.png or .pdf)")
    exporting.add_argument(
        "--allow-missing",
        choices=export.MISSING_CHOICES,
        help="shots without an approved take: a black placeholder, or skip them (default: refuse)",
    )
    exporting.add_argument(
        "--self-contained", action="store_true", help="copy the takes next to the timeline, with relative paths"
    )
    exporting.set_defaults(handler=_export)
    return parser


def add_paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offset", type=int, default=0, help="skip this many (default 0)")
    parser.add_argument("--limit", type=int, default=100, help="at most this many (default 100, max 500)")


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--auth", help="USER:PASS, required to listen beyond this machine (or $CONTINUITY_AUTH)")
    parser.add_argument("--share", action="store_true", help="make a public link (needs --auth)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    serving = args.command in (None, "serve")
    logging.basicConfig(
        level=logging.INFO if serving else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    as_json = getattr(args, "json", False)
    if serving:
        from app.server import serve

        if args.command is None:
            args.host, args.port, args.auth, args.share = "127.0.0.1", 7860, None, False
        try:
            return serve(
                getattr(args, "data_dir", None), host=args.host, port=args.port, auth=args.auth, share=args.share
            )
        except StudioError as exc:
            return _fail(exc, as_json)
    try:
        studio = open_studio(getattr(args, "data_dir", None))
    except StudioError as exc:
        return _fail(exc, as_json)
    try:
        result = args.handler(studio, args)
    except StudioError as exc:
        return _fail(exc, as_json)
    finally:
        studio.close()
    text, payload, code = result if len(result) == 3 else (*result, 0)
    _emit(_dump(payload, indent=2) if as_json else text)
    return code


def _fail(exc: StudioError, as_json: bool) -> int:
    if as_json:
        _emit(_dump({"error": {"type": type(exc).__name__, "message": str(exc)}}))
    _emit(f"error: {exc}", sys.stderr)
    return 1


def _utf8(stream: TextIO) -> bool:
    return (getattr(stream, "encoding", None) or "").lower().replace("-", "") in {"utf8", "utf8sig"}


def _dump(payload: Any, indent: int | None = None) -> str:
    """JSON as UTF-8 where the terminal takes it, else with \\u escapes (still valid JSON, same data)."""
    return json.dumps(payload, ensure_ascii=not _utf8(sys.stdout), indent=indent)


def _emit(text: str, stream: TextIO | None = None) -> None:
    """Print one result; a name the terminal cannot show is escaped rather than crashing after the work is done."""
    stream = stream or sys.stdout
    if not _utf8(stream):
        encoding = getattr(stream, "encoding", None) or "ascii"
        text = text.encode(encoding, errors="backslashreplace").decode(encoding)
    try:
        stream.write(text + "\n")
        stream.flush()
    except BrokenPipeError:
        # The reader went away (``| head``); the command itself succeeded. Point stdout at devnull so the
        # interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())


# Handlers return (text for people, payload for --json).


def _project_create(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    info = project.create_project(studio, args.name, width=args.width, height=args.height, fps=args.fps)
    return f"created project {info.name!r} ({info.width}x{info.height}, {info.fps} fps)", {"project": info.to_json()}


def _project_list(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    infos = project.list_projects(studio)
    lines = [f"{p.name}  ({p.shot_count} shots, {p.character_count} characters)" for p in infos]
    return "\n".join(lines) or "no projects yet", {"projects": [p.to_json() for p in infos]}


def _project_rename(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    info = project.rename_project(studio, args.project, args.new_name)
    return f"renamed to {info.name!r}", {"project": info.to_json()}


def _project_delete(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    if not args.yes:
        info = project.get_project(studio, args.project)
        raise StudioError(
            f"deleting {info.name!r} removes its {info.shot_count} shots and every take; run again with --yes"
        )
    info = project.delete_project(studio, args.project)
    return f"deleted project {info.name!r}", {"deleted": info.to_json()}


def _import(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    result = import_storyboard(studio, args.file, project=args.project)
    verb = "created" if result.created_project else "added to"
    text = (
        f"{verb} project {result.project.name!r}: {result.shots_added} shots, "
        f"{result.characters_added} characters, {result.references_added} reference images"
    )
    return text, result.to_json()


def _characters(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    infos = cast.list_characters(studio, args.project)
    lines = [f"{c.id}  {c.name}  ({len(c.references)} references)  {c.description}" for c in infos]
    return "\n".join(lines) or "no characters yet", {"characters": [c.to_json() for c in infos]}


def _character_add(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    info = cast.add_character(studio, args.project, args.name, description=args.description, references=args.reference)
    return f"added {info.name} with {len(info.references)} reference image(s)", {"character": info.to_json()}


def _shots(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    page = storyboard.list_shots(studio, args.project, offset=args.offset, limit=args.limit)
    info = project.get_project(studio, args.project)
    lines = [
        f"{s.number:>4}  {s.duration:>6.2f}s  {s.camera:<10}  {s.title or s.prompt[:60]}"
        + (f"  [{', '.join(s.characters)}]" if s.characters else "")
        + ("  approved" if s.approved_take_id else "")
        for s in page.items
    ]
    payload = {
        "project": info.to_json(),
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "shots": [s.to_json() for s in page.items],
    }
    return "\n".join(lines) or "no shots yet", payload


def _takes(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    page = takes.list_takes(
        studio, args.project, shot_number=args.shot, status=args.status, offset=args.offset, limit=args.limit
    )
    lines = [
        f"{t.id:>6}  shot {t.shot_number} take {t.take_number}  {t.status:<9} {t.backend}  seed {t.seed}"
        + ("  approved" if t.approved else "")
        for t in page.items
    ]
    payload = {
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "takes": [t.to_json() for t in page.items],
    }
    return "\n".join(lines) or "no takes", payload


def _status(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    status = project.project_status(studio, args.project)
    missing = ", ".join(str(n) for n in status.missing_approval) or "none"
    counts = ", ".join(f"{n} {name}" for name, n in status.takes_by_status.items() if n) or "no takes"
    text = (
        f"{status.project.name}: {status.approved_count}/{status.shot_count} shots approved "
        f"({status.approved_seconds:.1f}s of {status.storyboard_seconds:.1f}s); takes: {counts}; "
        f"shots without an approved take: {missing}"
    )
    return text, status.to_json()


def _approve(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    info = takes.approve_take(studio, args.take_id)
    return f"approved take {info.take_number} of shot {info.shot_number}", {"take": info.to_json()}


def _shot_numbers(args: argparse.Namespace) -> list[int] | None:
    if args.shot is not None:
        return [args.shot]
    if args.shots:
        first, sep, last = args.shots.partition("-")
        if not sep or not first.strip().isdigit() or not last.strip().isdigit():
            raise InvalidInput(f"must be a range like 3-7, got {args.shots!r}", "--shots")
        start, end = int(first), int(last)
        if start < 1 or end < start:
            raise InvalidInput(
                f"must be a range like 3-7 with the first number not above the second, got {args.shots!r}", "--shots"
            )
        return list(range(start, end + 1))
    return None


def _render(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    settings = render.RenderSettings(
        backend=args.backend, steps=args.steps, guidance=args.guidance, refiner=args.refiner
    )
    jobs = render.queue_renders(
        studio,
        args.project,
        shots=_shot_numbers(args),
        takes=args.takes,
        settings=settings,
        seed=args.seed,
        priority=args.priority,
    )
    if not args.wait:
        text = f"queued {len(jobs)} take(s); run 'python app.py worker' (or render with --wait) to render them"
        return text, {"jobs": [j.to_json() for j in jobs]}, 0
    return _wait_for(studio, jobs)


def _rerender(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    job = render.render_again(studio, args.take_id)
    if not args.wait:
        return f"queued job {job.id} to render take {args.take_id} again", {"jobs": [job.to_json()]}, 0
    return _wait_for(studio, [job])


def _wait_for(studio: Studio, jobs: list[render.JobInfo]) -> tuple[str, Any, int]:
    """Render in this process until the given jobs are finished (or watch the worker that serves the device);
    other queued jobs may run first. Ctrl-C cancels those not finished."""
    ids = [job.id for job in jobs]
    done = wait_for_jobs(studio, ids)
    takes_made = render.takes_of_jobs(studio, ids)
    failed = [job for job in done if job.state != "done"]
    lines = [
        f"shot {job.shot_number} take {job.take_number}: {job.state}" + (f" ({job.error})" if job.error else "")
        for job in done
    ]
    payload = {"jobs": [job.to_json() for job in done], "takes": [take.to_json() for take in takes_made]}
    return "\n".join(lines), payload, 1 if failed else 0


def _worker(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with RenderWorker(studio, device=args.device) as worker:
            if worker.recovered:
                log.warning("re-queued or failed %d job(s) interrupted earlier", len(worker.recovered))
            try:
                ran = worker.run(once=args.once, stop=stop)
            except KeyboardInterrupt:
                ran = -1
    finally:
        signal.signal(signal.SIGTERM, previous)
    text = "stopped" if ran < 0 else f"rendered {ran} job(s)"
    return text, {"jobs_run": max(ran, 0), "recovered": worker.recovered}, 0


def _queue(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    jobs = render.list_jobs(studio, args.project)
    lines = [
        f"{j.id:>6}  {j.state:<9} shot {j.shot_number} take {j.take_number}  {j.backend}  seed {j.seed}"
        + (f"  {j.stage} {j.step}/{j.total}" if j.state == "running" else "")
        + (f"  ({j.error})" if j.error else "")
        for j in jobs
    ]
    return "\n".join(lines) or "the queue is empty", {"jobs": [j.to_json() for j in jobs]}


def _cancel(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    job = render.cancel_job(studio, args.job_id)
    text = "cancelled" if job.state == "cancelled" else "asked the worker to stop it at its next step"
    return f"job {job.id}: {text}", {"job": job.to_json()}


def _retry(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    job = render.retry_job(studio, args.job_id)
    return f"job {job.id} queued again", {"job": job.to_json()}


def _score(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    results = scoring.score_project(
        studio, args.project, shot_number=args.shot, embedder=args.embedder, rescore=args.rescore
    )

    def shown(value: float | None) -> str:
        return "  -  " if value is None else f"{value:.3f}"

    lines = [
        f"shot {r.shot_number} take {r.take_number} (id {r.take_id})  identity {shown(r.scores.get('identity'))}  "
        f"continuity {shown(r.scores.get('continuity'))}  stability {shown(r.scores.get('stability'))}  "
        f"overall {shown(r.overall)}" + ("  approved" if r.approved else "")
        for r in results
    ]
    suggestions = {str(shot): best.take_id for shot, best in sorted(scoring.best_per_shot(results).items())}
    embedder = results[0].embedder if results else scoring.embedder_for(args.embedder).id
    lines.append(f"scored with {embedder}; suggested takes: {suggestions or 'none'}")
    payload = {"embedder": embedder, "takes": [r.to_json() for r in results], "suggested": suggestions}
    return "\n".join(lines), payload


def _pack(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    result = bundles.pack_project(studio, args.project, args.bundle, takes=args.takes)
    payload = {
        "bundle": str(result.path),
        "project": result.project,
        "takes": result.takes_mode,
        "counts": asdict(result.counts),
        "bytes": result.byte_size,
        "origin": result.origin,
    }
    return f"packed {result.project!r} into {result.path} ({result.byte_size / 2**20:.1f} MiB)", payload


def _unpack(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    if args.takes_only and not args.merge:
        raise InvalidInput("only applies when merging: add --merge", "--takes-only")
    if args.merge:
        merged = bundles.merge_bundle(studio, args.bundle, args.as_name, takes_only=args.takes_only)
        payload = {
            "project": merged.project,
            "project_id": merged.project_id,
            "takes_added": merged.takes_added,
            "takes_already_there": merged.takes_already_there,
            "shots_unmatched": merged.shots_unmatched,
            "characters_added": merged.characters_added,
            "references_added": merged.references_added,
            "shots_added": merged.shots_added,
            "shots_differing": merged.shots_differing,
            "stayed_deleted": merged.stayed_deleted,
        }
        lines = [f"merged into {merged.project!r}: {merged.takes_added} new take(s)"]
        if merged.shots_added or merged.characters_added:
            lines.append(f"added shots {merged.shots_added} and {merged.characters_added} character(s)")
        if merged.shots_differing:
            lines.append(f"shots {merged.shots_differing} differ from the bundle's: kept as they are here")
        if merged.stayed_deleted:
            lines.append(f"left out {merged.stayed_deleted} shot(s), take(s) or picture(s) deleted here meanwhile")
        if merged.shots_unmatched:
            lines.append(f"left out the takes of the bundle's shots {merged.shots_unmatched} (not in this project)")
        return "\n".join(lines), payload
    result = bundles.unpack_bundle(studio, args.bundle, as_name=args.as_name)
    payload = {
        "project": result.project,
        "project_id": result.project_id,
        "counts": asdict(result.counts),
        "new_media_files": result.new_media_files,
        "schema_revision": result.schema_revision,
    }
    return f"unpacked {result.project!r}", payload


def _backends(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    infos = available_backends(studio)
    lines = [f"{b.name:<10} {'ready' if b.available else 'unavailable':<12} {b.reason}" for b in infos]
    return "\n".join(lines), {"backends": [b.to_json() for b in infos]}


def _fetch_weights(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    folder = fetch_weights(studio, args.backend, args.source, revision=args.revision)
    return f"{args.backend}: {folder}", {"backend": args.backend, "folder": str(folder)}


def _verify(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    report = verify_media(studio)
    lines = [f"{p.problem}: {p.path}" for p in report.problems]
    text = "\n".join([*lines, f"checked {report.checked} file(s), {len(report.problems)} problem(s)"])
    problems = [{"sha256": p.sha256, "path": str(p.path), "problem": p.problem} for p in report.problems]
    return text, {"checked": report.checked, "problems": problems}, 0 if report.ok else 1


def _export(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    # Every output is checked before the film is encoded, so a bad path fails at once rather than after it.
    film_path = export.check_output_path(args.out, export.FILM_SUFFIXES, "--out")
    if args.timeline is not None:
        export.check_output_path(args.timeline, tuple(export.TIMELINE_ADAPTERS), "--timeline")
    elif args.self_contained:
        raise InvalidInput("copies the media next to a timeline: add --timeline FILE", "--self-contained")
    if args.contact_sheet is not None:
        export.check_output_path(args.contact_sheet, export.CONTACT_SHEET_SUFFIXES, "--contact-sheet")
    options = export.ExportOptions(
        crossfade=args.crossfade, titles=args.titles, audio=args.audio, allow_missing=args.allow_missing
    )
    edit = export.plan_edit(studio, args.project, options)
    film = export.write_film(edit, film_path)
    lines = [f"wrote {film.path} ({film.seconds:.2f} s, {film.width}x{film.height}, {film.fps} fps, {film.method})"]
    if film.skipped_shots:
        lines.append(f"left out shots without an approved take: {', '.join(map(str, film.skipped_shots))}")
    if film.placeholder_shots:
        lines.append(f"black placeholders for shots: {', '.join(map(str, film.placeholder_shots))}")
    payload: dict[str, Any] = {"film": film.to_json(), "timeline": None, "contact_sheet": None}
    if args.timeline is not None:
        timeline = export.write_timeline(edit, args.timeline, self_contained=args.self_contained)
        lines.append(f"wrote {timeline.path} ({timeline.format}, {timeline.clips} clips)")
        payload["timeline"] = timeline.to_json()
    if args.contact_sheet is not None:
        sheet = export.export_contact_sheet(studio, args.project, args.contact_sheet)
        lines.append(f"wrote {sheet.path} ({sheet.shots} shots)")
        payload["contact_sheet"] = sheet.to_json()
    return "\n".join(lines), payload
