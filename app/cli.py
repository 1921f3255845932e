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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from projects.defaults import DATA_ENV, DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_WIDTH, MISSING_CHOICES

log = logging.getLogger(__name__)

PROJECT = "the project's name, or #ID for its id (a bare number naming one project and numbering another is refused)"


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
    create.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    create.add_argument("--height", type=int, default=DEFAULT_HEIGHT)
    create.add_argument("--fps", type=int, default=DEFAULT_FPS)
    create.set_defaults(handler="run_project_create")
    listing = proj_commands.add_parser("list", parents=[common], help="list projects")
    listing.set_defaults(handler="run_project_list")
    rename = proj_commands.add_parser("rename", parents=[common], help="rename a project")
    rename.add_argument("project", help=PROJECT)
    rename.add_argument("new_name")
    rename.set_defaults(handler="run_project_rename")
    delete = proj_commands.add_parser("delete", parents=[common], help="delete a project and all its takes")
    delete.add_argument("project", help=PROJECT)
    delete.add_argument("--yes", action="store_true", help="confirm: the project cannot be recovered")
    delete.set_defaults(handler="run_project_delete")

    imp = commands.add_parser("import", parents=[common], help="import a storyboard file (.json or .csv)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--project", help="project name (default: the file's 'project', else the file name)")
    imp.set_defaults(handler="run_import")

    chars = commands.add_parser("characters", parents=[common], help="list a project's cast")
    chars.add_argument("project", help=PROJECT)
    chars.set_defaults(handler="run_characters")
    char = commands.add_parser("character", parents=[common], help="add a character to a project")
    char_commands = char.add_subparsers(dest="character_command", metavar="ACTION", required=True)
    char_add = char_commands.add_parser("add", parents=[common], help="add a character with reference images")
    char_add.add_argument("project", help=PROJECT)
    char_add.add_argument("name")
    char_add.add_argument("--description", default="")
    char_add.add_argument("--reference", type=Path, action="append", default=[], help="an image (repeatable)")
    char_add.set_defaults(handler="run_character_add")

    shots = commands.add_parser("shots", parents=[common], help="list a project's shots in storyboard order")
    shots.add_argument("project", help=PROJECT)
    add_paging(shots)
    shots.set_defaults(handler="run_shots")

    take_list = commands.add_parser("takes", parents=[common], help="list a project's takes")
    take_list.add_argument("project", help=PROJECT)
    take_list.add_argument("--shot", type=int, help="only this shot number")
    take_list.add_argument("--status", help="only takes with this status")
    add_paging(take_list)
    take_list.set_defaults(handler="run_takes")

    status = commands.add_parser("status", parents=[common], help="shots, approvals and takes at a glance")
    status.add_argument("project", help=PROJECT)
    status.set_defaults(handler="run_status")

    approve = commands.add_parser("approve", parents=[common], help="approve a take for its shot")
    approve.add_argument("take_id", type=int)
    approve.set_defaults(handler="run_approve")
    best = commands.add_parser(
        "approve-best",
        parents=[common],
        help="approve the best-scoring take of each shot, along the chain of continued shots",
    )
    best.add_argument("project", help=PROJECT)
    best.add_argument("--embedder", help="score with this embedder (default: $CONTINUITY_EMBEDDER, else offline)")
    best.add_argument("--replace", action="store_true", help="replace approvals made before, too")
    best.set_defaults(handler="run_approve_best")

    render = commands.add_parser("render", parents=[common], help="queue takes (and with --wait, render them)")
    render.add_argument("project", help=PROJECT)
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
    render.add_argument(
        "--until",
        metavar="SCORE>=X",
        help="render now, take after take, until one clears the bar for every character (e.g. identity>=0.7)",
    )
    render.add_argument("--max-takes", type=int, default=4, help="with --until: new takes a shot at most (default 4)")
    render.add_argument(
        "--review",
        action="store_true",
        help="with --until: leave the clearing take for review, unapproved",
    )
    render.set_defaults(handler="run_render")

    keys = commands.add_parser(
        "keyframes", parents=[common], help="draw candidates of each shot's first (and last) frame from its cast"
    )
    keys.add_argument("project", help=PROJECT)
    which = keys.add_mutually_exclusive_group()
    which.add_argument("--shot", type=int, help="one shot, by number")
    which.add_argument("--shots", help="a range of shots, A-B")
    which.add_argument("--all", action="store_true", help="every shot (the default)")
    keys.add_argument("--candidates", type=int, default=4, help="candidates per frame (default 4)")
    keys.add_argument("--backend", default="compose", help="which keyframe backend (see 'backends'; default compose)")
    keys.add_argument("--last-frame", action="store_true", help="draw candidates of each shot's last frame too")
    keys.add_argument("--seed", type=int, help="first seed (later candidates count up); random if not given")
    keys.add_argument("--steps", type=int, help="denoising steps (the backend's default if not given)")
    keys.add_argument("--guidance", type=float, help="guidance scale (the backend's default if not given)")
    keys.add_argument("--priority", type=int, default=0, help="higher runs sooner (default 0)")
    keys.add_argument("--wait", action="store_true", help="draw now, in this process, and wait for the candidates")
    keys.set_defaults(handler="run_keyframes")

    candidates = commands.add_parser(
        "candidates", parents=[common], help="list a project's keyframe candidates with their identity scores"
    )
    candidates.add_argument("project", help=PROJECT)
    candidates.add_argument("--shot", type=int, help="one shot, by number")
    candidates.set_defaults(handler="run_candidates")

    approve_key = commands.add_parser(
        "approve-keyframe",
        parents=[common],
        help="approve a keyframe candidate: it becomes its shot's keyframe (or last frame); a view is kept",
    )
    approve_key.add_argument("candidate_id", type=int)
    approve_key.set_defaults(handler="run_approve_keyframe")

    sheet = commands.add_parser(
        "sheet", parents=[common], help="draw a character sheet (further views) from a character's photos"
    )
    sheet.add_argument("project", help=PROJECT)
    sheet.add_argument("character", help="the character's name")
    sheet.add_argument(
        "--views", default="front,three-quarter,profile,full-figure", help="comma-separated views (default: all four)"
    )
    sheet.add_argument("--candidates", type=int, default=1, help="candidates per view (default 1)")
    sheet.add_argument("--backend", default="qwen-image-edit", help="which keyframe backend (default qwen-image-edit)")
    sheet.add_argument("--seed", type=int, help="first seed; random if not given")
    sheet.add_argument("--wait", action="store_true", help="draw now, in this process, and wait for the views")
    sheet.set_defaults(handler="run_sheet")

    again = commands.add_parser("rerender", parents=[common], help="render a take again, exactly as it was made")
    again.add_argument("take_id", type=int)
    again.add_argument("--wait", action="store_true", help="render now and wait")
    again.set_defaults(handler="run_rerender")

    worker = commands.add_parser("worker", parents=[common], help="render queued takes until stopped")
    worker.add_argument("--once", action="store_true", help="stop when the queue is empty")
    worker.add_argument(
        "--device", default="auto", help="auto (the first GPU, else the CPU), cpu, cuda or cuda:N; one worker a device"
    )
    worker.set_defaults(handler="run_worker")

    farm = commands.add_parser(
        "farm", parents=[common], help="render the queue on a Ray cluster: every GPU here, or the machines of one"
    )
    farm.add_argument(
        "--address", help="a Ray cluster (ray://HOST:10001, HOST:6379 or auto); default: start Ray on this machine"
    )
    farm.add_argument("--gpus-per-worker", type=float, default=1.0, metavar="N", help="GPUs each worker takes")
    farm.add_argument("--workers", type=int, help="how many workers (default: one per GPU, or one CPU worker)")
    farm.add_argument("--once", action="store_true", help="stop when nothing is queued or rendering")
    farm.set_defaults(handler="run_farm")

    queue = commands.add_parser("queue", parents=[common], help="the render queue of a project")
    queue.add_argument("project", help=PROJECT)
    queue.set_defaults(handler="run_queue")

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    cancel.add_argument("job_id", type=int)
    cancel.set_defaults(handler="run_cancel")

    retry = commands.add_parser("retry", parents=[common], help="queue a failed or cancelled job again")
    retry.add_argument("job_id", type=int)
    retry.set_defaults(handler="run_retry")

    score = commands.add_parser("score", parents=[common], help="consistency scores of a project's takes")
    score.add_argument("project", help=PROJECT)
    score.add_argument("--shot", type=int, help="only this shot number")
    score.add_argument(
        "--embedder", help="'offline' (default, or $CONTINUITY_EMBEDDER) or a CLIP/DINOv2/SigLIP folder or hub id"
    )
    score.add_argument("--rescore", action="store_true", help="compute again even where scores exist")
    score.set_defaults(handler="run_score")

    pack = commands.add_parser("pack", parents=[common], help="pack a project (rows and media) into a zip bundle")
    pack.add_argument("project", help=PROJECT)
    pack.add_argument("bundle", type=Path)
    pack.add_argument("--takes", choices=["approved", "all", "none"], default="approved", help="which takes go in")
    pack.add_argument("--overwrite", action="store_true", help="replace the bundle file if it exists")
    pack.set_defaults(handler="run_pack")

    unpack = commands.add_parser("unpack", parents=[common], help="restore a bundle, or merge it back with --merge")
    unpack.add_argument("bundle", type=Path)
    unpack.add_argument("--as", dest="as_name", help="the project's name here (when the bundle's name is taken)")
    unpack.add_argument(
        "--merge",
        action="store_true",
        help="bring the bundle's new takes, shots and characters back into the project it came from",
    )
    unpack.add_argument("--takes-only", action="store_true", help="with --merge: only takes of shots this project has")
    unpack.add_argument(
        "--force",
        action="store_true",
        help="with --merge: merge even a bundle that does not say it came from this project",
    )
    unpack.set_defaults(handler="run_unpack")

    backends = commands.add_parser(
        "backends", parents=[common], help="list video and keyframe backends and whether each can run"
    )
    backends.set_defaults(handler="run_backends")

    weights = commands.add_parser(
        "fetch-weights",
        parents=[common],
        help="link a model folder, or download a Hugging Face repo (safetensors only), where a backend looks",
    )
    weights.add_argument(
        "backend",
        help="a backend (sana-wm, wan-i2v, wan-vace, qwen-image-edit, flux2-klein) or a refiner (sana-wm-refiner, "
        "wan-refiner); see 'backends'",
    )
    weights.add_argument("source", help="a diffusers model folder on this machine, or a Hugging Face repo id")
    weights.add_argument("--revision", help="a branch, tag or commit of the repo (pin it for reproducible takes)")
    weights.add_argument(
        "--no-refiner",
        action="store_true",
        help="fetch the backbone only (sana-wm fetches its refiner, REPO-refiner, beside it by default)",
    )
    weights.set_defaults(handler="run_fetch_weights")

    planning = commands.add_parser(
        "plan",
        parents=[common],
        help="how a backend's weights would be held on a card (here or not): quantized, offloaded, the peaks, why",
    )
    planning.add_argument("backend", help="a backend with weights (sana-wm, wan-i2v, wan-vace, qwen-image-edit, ...)")
    planning.add_argument(
        "--vram", type=float, metavar="GB", help="the card's memory in GiB (default: this machine's free VRAM)"
    )
    planning.add_argument(
        "--ram", type=float, metavar="GB", help="host RAM in GiB (default: unknown for another card, free RAM here)"
    )
    planning.add_argument("--refiner", action="store_true", help="with the refiner loaded beside the backbone")
    planning.add_argument("--width", type=int, help="frame width (default: the backend's planning size)")
    planning.add_argument("--height", type=int, help="frame height")
    planning.add_argument("--frames", type=int, help="frames per take (1 for a keyframe backend)")
    planning.set_defaults(handler="run_plan")

    verify = commands.add_parser("verify", parents=[common], help="re-hash every stored media file")
    verify.set_defaults(handler="run_verify")

    cutting = commands.add_parser(
        "cut", parents=[common], help="show the cut, or set a shot's in and out points, crossfade and title card"
    )
    cutting.add_argument("project", help=PROJECT)
    cutting.add_argument("shot", type=int, nargs="?", help="the shot to change (without it: show the cut)")
    cutting.add_argument("--in", dest="cut_in", type=float, metavar="S", help="seconds into the take where it starts")
    ending = cutting.add_mutually_exclusive_group()
    ending.add_argument("--out", dest="cut_out", type=float, metavar="S", help="seconds into the take where it ends")
    ending.add_argument("--to-end", action="store_true", help="keep the take to its end")
    fading = cutting.add_mutually_exclusive_group()
    fading.add_argument("--crossfade", type=float, metavar="S", help="seconds of dissolve into the shot (0: a cut)")
    fading.add_argument("--export-crossfade", action="store_true", help="leave the dissolve to the export's")
    cutting.add_argument("--card", metavar="TEXT", help='a title card before the shot ("" removes it)')
    cutting.set_defaults(handler="run_cut")

    exporting = commands.add_parser(
        "export", parents=[common], help="export the approved takes as a film, a timeline and a contact sheet"
    )
    exporting.add_argument("project", help=PROJECT)
    exporting.add_argument("--out", type=Path, required=True, help="the film (.mp4)")
    exporting.add_argument(
        "--timeline", type=Path, help="also a timeline: .otio, .xml (FCP 7), .edl (CMX 3600) or .kdenlive"
    )
    exporting.add_argument(
        "--crossfade", type=float, default=0.0, help="seconds of dissolve at every join a shot's cut leaves open"
    )
    exporting.add_argument(
        "--ignore-cut", action="store_true", help="leave out the trims, crossfades and cards saved with the shots"
    )
    exporting.add_argument(
        "--titles", action="store_true", help="title cards: the project's name, then where each scene begins"
    )
    exporting.add_argument("--audio", type=Path, help="a music track, looped or cut to the film, faded out")
    exporting.add_argument("--contact-sheet", type=Path, help="also a storyboard contact sheet (.png or .pdf)")
    exporting.add_argument(
        "--allow-missing",
        choices=MISSING_CHOICES,
        help="shots without an approved take: a black placeholder, or skip them (default: refuse)",
    )
    exporting.add_argument(
        "--self-contained", action="store_true", help="copy the takes next to the timeline, with relative paths"
    )
    exporting.set_defaults(handler="run_export")
    return parser


def add_paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offset", type=int, default=0, help="skip this many (default 0)")
    parser.add_argument("--limit", type=int, default=100, help="at most this many (default 100, max 500)")


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--auth", help="USER:PASS, required to listen beyond this machine (or $CONTINUITY_AUTH)")
    parser.add_argument("--share", action="store_true", help="make a public link (needs --auth)")
    parser.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="a host name the page also answers to, besides 127.0.0.1 and localhost (repeatable; or "
        "$CONTINUITY_ALLOWED_HOSTS, comma-separated)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    serving = args.command in (None, "serve")
    logging.basicConfig(
        level=logging.INFO if serving else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    as_json = getattr(args, "json", False)
    if args.command is None:
        args.host, args.port, args.auth, args.share = "127.0.0.1", 7860, None, False
    from projects.errors import StudioError, in_words

    try:
        if serving:
            from app.exposure import check_exposure

            exposure = check_exposure(
                args.host, auth=args.auth, share=args.share, allow_hosts=getattr(args, "allow_host", None)
            )
            # The page's libraries take many seconds to load on a first start: say so before it begins.
            _emit(f"Continuity: starting the studio on {args.host}:{args.port}, loading libraries...", sys.stderr)
            from app.server import serve

            return serve(getattr(args, "data_dir", None), exposure, port=args.port)
        from app import commands
        from projects.studio import open_studio

        studio = open_studio(getattr(args, "data_dir", None))
        try:
            result = getattr(commands, args.handler)(studio, args)
        finally:
            studio.close()
    except StudioError as exc:
        return _fail(exc, as_json)
    except Exception as exc:  # not the studio's own refusal: a full disk, a busy database, or a bug
        words = in_words(exc)
        if words is None:
            log.debug("unexpected error", exc_info=True)
            words = StudioError(f"something went wrong ({type(exc).__name__}: {exc}); this is a bug, please report it")
        return _fail(words, as_json)
    text, payload, code = result if len(result) == 3 else (*result, 0)
    _emit(_dump(payload, indent=2) if as_json else text)
    return code


def _fail(exc: Exception, as_json: bool) -> int:
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
