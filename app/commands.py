"""What each command of ``python app.py`` does: one function per command, taking the open studio and the parsed
arguments and returning (text for people, payload for ``--json``[, exit status]).

Kept apart from the parser in :mod:`app.cli`, which imports none of this, so ``python app.py`` answers at once.
The services that bring in the model, video and image libraries (rendering, scoring, export, bundles, backends) are
imported by the commands that use them, so a command that only reads the database answers in well under a second.
The module is longer than 500 lines because it holds every command, each a few lines that call a service.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

from projects import cast, project, storyboard, takes
from projects.errors import InvalidInput, StudioError
from projects.studio import Studio

if TYPE_CHECKING:
    from projects.render_queue import JobInfo, RenderSettings

log = logging.getLogger(__name__)


def run_project_create(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    info = project.create_project(studio, args.name, width=args.width, height=args.height, fps=args.fps)
    return f"created project {info.name!r} ({info.width}x{info.height}, {info.fps} fps)", {"project": info.to_json()}


def run_project_list(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    infos = project.list_projects(studio)
    lines = [f"{p.name}  ({p.shot_count} shots, {p.character_count} characters)" for p in infos]
    return "\n".join(lines) or "no projects yet", {"projects": [p.to_json() for p in infos]}


def run_project_rename(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    info = project.rename_project(studio, args.project, args.new_name)
    return f"renamed to {info.name!r}", {"project": info.to_json()}


def run_project_delete(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    if not args.yes:
        info = project.get_project(studio, args.project)
        raise StudioError(
            f"deleting {info.name!r} removes its {info.shot_count} shots and every take; run again with --yes"
        )
    info = project.delete_project(studio, args.project)
    return f"deleted project {info.name!r}", {"deleted": info.to_json()}


def run_import(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects.storyboard_file import import_storyboard

    result = import_storyboard(studio, args.file, project=args.project)
    verb = "created" if result.created_project else "added to"
    text = (
        f"{verb} project {result.project.name!r}: {result.shots_added} shots, "
        f"{result.characters_added} characters, {result.references_added} reference images"
    )
    return text, result.to_json()


def run_characters(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    infos = cast.list_characters(studio, args.project)
    lines = [f"{c.id}  {c.name}  ({len(c.references)} references)  {c.description}" for c in infos]
    return "\n".join(lines) or "no characters yet", {"characters": [c.to_json() for c in infos]}


def run_character_add(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    info = cast.add_character(studio, args.project, args.name, description=args.description, references=args.reference)
    return f"added {info.name} with {len(info.references)} reference image(s)", {"character": info.to_json()}


def run_shots(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    page = storyboard.list_shots(studio, args.project, offset=args.offset, limit=args.limit)
    info = project.get_project(studio, args.project)
    lines = [
        f"{s.number:>4}  {s.duration:>6.2f}s  {s.camera:<10}  {s.title or s.prompt[:60]}"
        + (f"  [{', '.join(s.characters)}]" if s.characters else "")
        + ("  approved" if s.approved_take_id else "")
        for s in page.items
    ]
    return "\n".join(lines) or "no shots yet", {"project": info.to_json(), **page.to_json("shots")}


def run_takes(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    page = takes.list_takes(
        studio, args.project, shot_number=args.shot, status=args.status, offset=args.offset, limit=args.limit
    )
    lines = [
        f"{t.id:>6}  shot {t.shot_number} take {t.take_number}  {t.status:<9} {t.backend}  seed {t.seed}"
        + ("  approved" if t.approved else "")
        for t in page.items
    ]
    return "\n".join(lines) or "no takes", page.to_json("takes")


def run_status(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    status = project.project_status(studio, args.project)
    missing = ", ".join(str(n) for n in status.missing_approval) or "none"
    counts = ", ".join(f"{n} {name}" for name, n in status.takes_by_status.items() if n) or "no takes"
    text = (
        f"{status.project.name}: {status.approved_count}/{status.shot_count} shots approved "
        f"({status.approved_seconds:.1f}s of {status.storyboard_seconds:.1f}s); takes: {counts}; "
        f"shots without an approved take: {missing}"
    )
    return text, status.to_json()


def run_approve(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    info = takes.approve_take(studio, args.take_id)
    return f"approved take {info.take_number} of shot {info.shot_number}", {"take": info.to_json()}


def run_approve_best(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects import scoring

    made = scoring.approve_best(studio, args.project, embedder=args.embedder, keep_approved=not args.replace)
    lines = [f"approved take {t.take_number} of shot {t.shot_number} (id {t.id})" for t in made]
    return "\n".join(lines) or "nothing to approve: every shot keeps its approval", {
        "approved": [t.to_json() for t in made]
    }


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


def run_render(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    from projects import render_queue

    settings = render_queue.RenderSettings(
        backend=args.backend, steps=args.steps, guidance=args.guidance, refiner=args.refiner
    )
    if args.until is not None:
        return _render_until(studio, args, settings)
    if args.review or args.max_takes != 4:
        raise InvalidInput("only applies with --until SCORE>=X", "--review" if args.review else "--max-takes")
    jobs = render_queue.queue_renders(
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


def _render_until(studio: Studio, args: argparse.Namespace, settings: RenderSettings) -> tuple[str, Any, int]:
    from projects import retakes
    from projects.render_now import wait_for_jobs

    if args.takes != 1:
        raise InvalidInput("--until renders one take at a time; set the budget with --max-takes", "--takes")
    report = retakes.render_until(
        studio,
        args.project,
        args.until,
        max_takes=args.max_takes,
        shots=_shot_numbers(args),
        settings=settings,
        seed=args.seed,
        approve=not args.review,
        wait=lambda studio, ids: wait_for_jobs(studio, ids),
    )
    lines = []
    for shot in report.shots:
        who = ", ".join(f"{name} {c['score']:.2f} ({c['verdict']})" for name, c in shot.characters.items())
        state = "cleared" if shot.cleared else "not cleared"
        take = f"take id {shot.take_id}" if shot.take_id is not None else "no finished take"
        extra = ", approved" if shot.approved else ""
        lines.append(
            f"shot {shot.shot_number}: {state} after {shot.takes_rendered} new take(s); {take}{extra}"
            + (f"; {who}" if who else "")
            + (f" ({shot.note})" if shot.note else "")
        )
    missing = [shot.shot_number for shot in report.not_cleared]
    lines.append(
        f"{report.takes_rendered} take(s) rendered; "
        + (
            f"shots below {report.bar}: {', '.join(map(str, missing))}"
            if missing
            else f"every shot reached {report.bar}"
        )
    )
    return "\n".join(lines), report.to_json(), 1 if missing else 0


def run_keyframes(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    from projects import keyframes

    settings = keyframes.DrawSettings(backend=args.backend, steps=args.steps, guidance=args.guidance)
    jobs = keyframes.queue_keyframes(
        studio,
        args.project,
        shots=_shot_numbers(args),
        candidates=args.candidates,
        settings=settings,
        frames=("first", "last") if args.last_frame else ("first",),
        seed=args.seed,
        priority=args.priority,
    )
    if not args.wait:
        text = f"queued {len(jobs)} keyframe candidate(s); run 'python app.py worker' (or add --wait) to draw them"
        return text, {"jobs": [j.to_json() for j in jobs]}, 0
    return _wait_for_pictures(studio, jobs)


def run_sheet(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    from projects import keyframes

    views = [view.strip() for view in args.views.split(",") if view.strip()]
    jobs = keyframes.queue_sheet(
        studio,
        args.project,
        args.character,
        views=views,
        candidates=args.candidates,
        settings=keyframes.DrawSettings(backend=args.backend),
        seed=args.seed,
    )
    if not args.wait:
        text = f"queued {len(jobs)} view(s); run 'python app.py worker' (or add --wait) to draw them"
        return text, {"jobs": [j.to_json() for j in jobs]}, 0
    return _wait_for_pictures(studio, jobs)


def _wait_for_pictures(studio: Studio, jobs: list[JobInfo]) -> tuple[str, Any, int]:
    from projects import keyframes
    from projects.render_now import wait_for_jobs

    done = wait_for_jobs(studio, [job.id for job in jobs])
    pictures = [keyframes.get_keyframe(studio, job.picture_take_id) for job in done if job.picture_take_id]
    by_id = {picture.id: picture for picture in pictures}
    lines = []
    for job in done:
        line = f"{job.what}: {job.state}" + (f" ({job.error})" if job.error else "")
        picture = by_id.get(job.picture_take_id or -1)
        if picture is not None and picture.status == "done":
            line += f" (id {picture.id}){_picture_scores(picture.scores)}"
        lines.append(line)
    failed = [job for job in done if job.state != "done"]
    payload = {"jobs": [job.to_json() for job in done], "candidates": [p.to_json() for p in pictures]}
    return "\n".join(lines), payload, 1 if failed else 0


def _picture_scores(scores: dict[str, Any]) -> str:
    parts = [f"{name} {c['score']:.2f} ({c['verdict']})" for name, c in scores.get("characters", {}).items()]
    if "continuity" in scores:
        parts.append(f"continuity {scores['continuity']:.2f}")
    return (": " + ", ".join(parts)) if parts else ""


def run_candidates(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects import keyframes

    pictures = keyframes.list_keyframes(studio, args.project, shot_number=args.shot)
    lines = [
        f"{p.id:>6}  {p.label}  {p.status}{' APPROVED' if p.approved else ''}  {p.backend} seed {p.seed}"
        + _picture_scores(p.scores)
        + (f"  ({p.error})" if p.error else "")
        for p in pictures
    ]
    return "\n".join(lines) or "no keyframe candidates yet", {"candidates": [p.to_json() for p in pictures]}


def run_approve_keyframe(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects import keyframes

    picture = keyframes.approve_keyframe(studio, args.candidate_id)
    if picture.character is not None:
        text = f"kept {picture.label} as a reference of {picture.character}"
    else:
        frame = "keyframe" if picture.role == "first" else "last frame"
        text = f"approved {picture.label}: it is shot {picture.shot_number}'s {frame}"
    return text, picture.to_json()


def run_rerender(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    from projects import render_queue

    job = render_queue.render_again(studio, args.take_id)
    if not args.wait:
        return f"queued job {job.id} to render take {args.take_id} again", {"jobs": [job.to_json()]}, 0
    return _wait_for(studio, [job])


def _wait_for(studio: Studio, jobs: list[JobInfo]) -> tuple[str, Any, int]:
    """Render in this process until the given jobs are finished (or watch the worker that serves the device);
    other queued jobs may run first. Ctrl-C cancels those not finished."""
    from projects import render_queue
    from projects.render_now import wait_for_jobs

    ids = [job.id for job in jobs]
    done = wait_for_jobs(studio, ids)
    takes_made = render_queue.takes_of_jobs(studio, ids)
    failed = [job for job in done if job.state != "done"]
    lines = [f"{job.what}: {job.state}" + (f" ({job.error})" if job.error else "") for job in done]
    payload = {"jobs": [job.to_json() for job in done], "takes": [take.to_json() for take in takes_made]}
    return "\n".join(lines), payload, 1 if failed else 0


def run_worker(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    from projects.worker import RenderWorker

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


def run_farm(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    from projects.farm import Farm

    stop = threading.Event()
    with Farm(
        studio,
        address=args.address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        pace_seconds=float(os.environ.get("CONTINUITY_FARM_PACE") or 0),  # drills: a fixed device time a take
        progress=print,
    ) as farm:
        devices = [worker.device for worker in farm.workers]
        # After Ray's start, which sets a SIGTERM handler of its own: a stop finishes the takes being rendered.
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            ended = farm.run(once=args.once, stop=stop)
        except KeyboardInterrupt:
            ended = -1
        finally:
            signal.signal(signal.SIGTERM, previous)
    text = "stopped" if ended < 0 else f"the farm ended {ended} job(s)"
    return text, {"jobs_ended": max(ended, 0), "workers": devices, "recovered": farm.recovered}, 0


def run_queue(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects import render_queue

    jobs = render_queue.list_jobs(studio, args.project)
    lines = [
        f"{j.id:>6}  {j.state:<9} {j.what}  {j.backend}  seed {j.seed}"
        + (f"  {j.stage} {j.step}/{j.total}" if j.state == "running" else "")
        + (f"  ({j.error})" if j.error else "")
        for j in jobs
    ]
    return "\n".join(lines) or "the queue is empty", {"jobs": [j.to_json() for j in jobs]}


def run_cancel(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects import render_queue

    job = render_queue.cancel_job(studio, args.job_id)
    text = "cancelled" if job.state == "cancelled" else "asked the worker to stop it at its next step"
    return f"job {job.id}: {text}", {"job": job.to_json()}


def run_retry(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects import render_queue

    job = render_queue.retry_job(studio, args.job_id)
    return f"job {job.id} queued again", {"job": job.to_json()}


def run_score(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects import scoring

    results = scoring.score_project(
        studio, args.project, shot_number=args.shot, embedder=args.embedder, rescore=args.rescore
    )

    def shown(value: float | None) -> str:
        return "  -  " if value is None else f"{value:.3f}"

    lines = [
        f"shot {r.shot_number} take {r.take_number} (id {r.take_id})  identity {shown(r.scores.get('identity'))}  "
        f"look {shown(r.scores.get('look'))}  continuity {shown(r.scores.get('continuity'))}  "
        f"stability {shown(r.scores.get('stability'))}  overall {shown(r.overall)}"
        + ("  approved" if r.approved else "")
        + (f"  [{r.cast_line()}]" if r.verdicts else "")
        for r in results
    ]
    suggestions = {str(shot): best.take_id for shot, best in sorted(scoring.best_per_shot(results).items())}
    embedder = results[0].embedder if results else scoring.embedder_for(args.embedder).id
    lines.append(f"scored with {embedder}; suggested takes: {suggestions or 'none'}")
    payload = {"embedder": embedder, "takes": [r.to_json() for r in results], "suggested": suggestions}
    return "\n".join(lines), payload


def run_pack(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects import bundles

    result = bundles.pack_project(studio, args.project, args.bundle, takes=args.takes, overwrite=args.overwrite)
    return f"packed {result.project!r} into {result.path} ({result.byte_size / 2**20:.1f} MiB)", result.to_json()


def run_unpack(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects import bundles

    for flag, given in (("--takes-only", args.takes_only), ("--force", args.force)):
        if given and not args.merge:
            raise InvalidInput("only applies when merging: add --merge", flag)
    if args.merge:
        merged = bundles.merge_bundle(studio, args.bundle, args.as_name, takes_only=args.takes_only, force=args.force)
        lines = [f"merged into {merged.project!r}: {merged.takes_added} new take(s)"]
        if merged.keyframes_added:
            lines.append(f"{merged.keyframes_added} new keyframe candidate(s)")
        if merged.keyframes_differing:
            lines.append(
                f"shots {merged.keyframes_differing} keep their own approved keyframe (another was approved there)"
            )
        if merged.shots_added or merged.characters_added:
            lines.append(f"added shots {merged.shots_added} and {merged.characters_added} character(s)")
        if merged.shots_differing:
            lines.append(f"shots {merged.shots_differing} differ from the bundle's: kept as they are here")
        if merged.stayed_deleted:
            lines.append(f"left out {merged.stayed_deleted} shot(s), take(s) or picture(s) deleted here meanwhile")
        if merged.shots_unmatched:
            lines.append(f"left out the takes of the bundle's shots {merged.shots_unmatched} (not in this project)")
        return "\n".join(lines), merged.to_json()
    result = bundles.unpack_bundle(studio, args.bundle, as_name=args.as_name)
    return f"unpacked {result.project!r}", result.to_json()


def run_backends(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects.backends import available_backends

    infos = available_backends(studio)
    lines = [
        f"{b.name:<16} {b.kind:<9} {'ready' if b.available else 'unavailable':<12} {b.reason}"
        + (f"; refiner {b.refiner.reason}" if b.refiner is not None else "")
        for b in infos
    ]
    return "\n".join(lines), {"backends": [b.to_json() for b in infos]}


def run_fetch_weights(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    from projects.backends import fetch_backend

    fetched = fetch_backend(studio, args.backend, args.source, revision=args.revision, refiner=not args.no_refiner)
    lines = [f"{args.backend}: {fetched.folder}"]
    if fetched.refiner is not None:
        if fetched.refiner_problem is None:
            lines.append(f"{fetched.refiner}: {fetched.refiner_folder}")
        else:
            lines.append(f"{fetched.refiner}: not installed ({fetched.refiner_problem})")
    return "\n".join(lines), fetched.to_json(), 1 if fetched.refiner_problem else 0


def run_plan(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    from projects.backends import memory_plan

    plan = memory_plan(
        studio,
        args.backend,
        vram_gib=args.vram,
        ram_gib=args.ram,
        refiner=args.refiner,
        width=args.width,
        height=args.height,
        frames=args.frames,
    )
    return plan.text(), plan.to_json(), 0 if plan.fits else 1


def run_verify(studio: Studio, args: argparse.Namespace) -> tuple[str, Any, int]:
    from projects.maintenance import verify_media

    report = verify_media(studio)
    lines = [f"{p.problem}: {p.path}" for p in report.problems]
    text = "\n".join([*lines, f"checked {report.checked} file(s), {len(report.problems)} problem(s)"])
    problems = [{"sha256": p.sha256, "path": str(p.path), "problem": p.problem} for p in report.problems]
    return text, {"checked": report.checked, "problems": problems}, 0 if report.ok else 1


def run_cut(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects import cut

    if args.shot is not None:
        given: dict[str, Any] = {}
        if args.cut_in is not None:
            given["cut_in"] = args.cut_in
        if args.cut_out is not None or args.to_end:
            given["cut_out"] = args.cut_out
        if args.crossfade is not None or args.export_crossfade:
            given["crossfade"] = args.crossfade
        if args.card is not None:
            given["card"] = args.card
        if not given:
            raise InvalidInput("say what to change: --in, --out, --to-end, --crossfade, --export-crossfade, --card")
        cut.set_cut(studio, args.project, args.shot, **given)
    elif any(v not in (None, False) for v in (args.cut_in, args.cut_out, args.to_end, args.crossfade, args.card)):
        raise InvalidInput("name the shot to change, e.g. 'cut PROJECT 3 --in 0.5'", "shot")
    shots = cut.the_cut(studio, args.project)
    lines = []
    for shot in shots:
        part = f"{shot.cut_in:g}-{'end' if shot.cut_out is None else f'{shot.cut_out:g}'} s"
        fade = "export's" if shot.crossfade is None else ("cut" if shot.crossfade == 0 else f"{shot.crossfade:g} s")
        line = f"{shot.number:>4}  {part:<12} into it: {fade:<9} {shot.title}"
        lines.append(line + (f"  [card: {shot.card.splitlines()[0]}]" if shot.card else ""))
    return "\n".join(lines) or "no shots yet", {"shots": [shot.to_json() for shot in shots]}


def run_export(studio: Studio, args: argparse.Namespace) -> tuple[str, Any]:
    from projects.edit_plan import ExportOptions
    from projects.export import export_project

    options = ExportOptions(
        crossfade=args.crossfade,
        titles=args.titles,
        audio=args.audio,
        allow_missing=args.allow_missing,
        saved_cut=not args.ignore_cut,
    )
    try:
        result = export_project(
            studio,
            args.project,
            args.out,
            timeline=args.timeline,
            contact_sheet=args.contact_sheet,
            options=options,
            self_contained=args.self_contained,
        )
    except InvalidInput as exc:  # the service names its fields; say them as the command line spells them
        flags = {"out": "--out", "timeline": "--timeline", "contact_sheet": "--contact-sheet"}
        if exc.field == "self_contained":
            raise InvalidInput("copies the media next to a timeline: add --timeline FILE", "--self-contained") from exc
        if exc.field in flags:
            raise InvalidInput(exc.reason, flags[exc.field]) from exc
        raise
    film = result.film
    lines = [f"wrote {film.path} ({film.seconds:.2f} s, {film.width}x{film.height}, {film.fps} fps, {film.method})"]
    if film.skipped_shots:
        lines.append(f"left out shots without an approved take: {', '.join(map(str, film.skipped_shots))}")
    if film.placeholder_shots:
        lines.append(f"black placeholders for shots: {', '.join(map(str, film.placeholder_shots))}")
    if result.timeline is not None:
        timeline = result.timeline
        lines.append(f"wrote {timeline.path} ({timeline.format}, {timeline.clips} clips)")
    if result.contact_sheet is not None:
        lines.append(f"wrote {result.contact_sheet.path} ({result.contact_sheet.shots} shots)")
    return "\n".join(lines), result.to_json()
