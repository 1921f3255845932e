"""The studio from Python: the services the page and the command line use, in two objects.

:class:`Studio` is an open data directory; :class:`Project` is one project in it. Every method calls the same
service the page's buttons and the command-line commands call, so the rules are the same everywhere: bad input
raises :class:`~projects.errors.StudioError` (or one of its kinds) with a message to show, and changes nothing.
Methods return the same frozen records those services return (``ProjectInfo``, ``ShotInfo``, ``TakeInfo``...).

The module is longer than most here on purpose: it is the Python API's reference, read top to bottom, and each
method is a docstring and one call into a service, so splitting it would split the reference, not a job.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from continuity.display import Table, show_video, video_path
from continuity.progress import progress_bar, wait_for_jobs
from projects import (
    bundles,
    cast,
    cut,
    export,
    keyframes,
    maintenance,
    render_queue,
    retakes,
    scoring,
    storyboard,
    takes,
)
from projects import project as projects_service
from projects.backends import available_backends, fetch_backend, models_dir
from projects.edit_plan import ExportOptions
from projects.errors import InvalidInput, NotFound, StudioError, in_words
from projects.records import CharacterInfo, ProjectInfo, ProjectStatus, ShotInfo, TakeInfo
from projects.storyboard_file import import_storyboard
from projects.studio import Studio as CoreStudio
from projects.studio import open_studio
from projects.worker import ModelCache

log = logging.getLogger(__name__)

PAGE = 500


class RenderFailed(StudioError):
    """Some takes did not render. ``takes`` holds every take of the request, finished or not."""

    def __init__(self, message: str, takes: list[TakeInfo]) -> None:
        super().__init__(message)
        self.takes = takes


class ExportResult(export.ExportResult):
    """What :meth:`Project.export` wrote (the export service's record). Showing it in a notebook plays the film."""

    def _repr_html_(self) -> str:
        return show_video(self.film.path)._repr_html_()


class Scores(Sequence[scoring.TakeScores]):
    """Consistency scores of a project's finished takes, in storyboard order, with the best take of each shot."""

    def __init__(self, items: list[scoring.TakeScores]) -> None:
        self.items = items

    def __getitem__(self, index: Any) -> Any:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def best(self) -> dict[int, int]:
        """Shot number to the id of its best-scoring take (by the mean of the scores, as the studio suggests)."""
        return {shot: item.take_id for shot, item in scoring.best_per_shot(self.items).items()}

    def table(self) -> Table:
        best = set(self.best.values())
        return Table(
            (
                "shot",
                "take",
                "take id",
                "identity",
                "cast",
                "look",
                "continuity",
                "stability",
                "overall",
                "best",
                "approved",
            ),
            (
                (
                    s.shot_number,
                    s.take_number,
                    s.take_id,
                    s.scores.get("identity"),
                    s.cast_line(),
                    s.scores.get("look"),
                    s.scores.get("continuity"),
                    s.scores.get("stability"),
                    s.overall,
                    s.take_id in best,
                    s.approved,
                )
                for s in self.items
            ),
        )

    def __repr__(self) -> str:
        return repr(self.table())

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def _speaking(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method``, raising a :class:`StudioError` in words for what is not a bug (a full disk, a busy database,
    input nested too deeply) instead of the library's own exception."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except StudioError:
            raise
        except Exception as exc:
            words = in_words(exc)
            if words is None:
                raise
            raise words from exc

    return wrapper


def _in_words(cls: type) -> type:
    """Every public method of ``cls`` through :func:`_speaking`."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, _speaking(member))
    return cls


def _take_id(take: TakeInfo | int) -> int:
    if isinstance(take, TakeInfo):
        return take.id
    if isinstance(take, bool) or not isinstance(take, int):
        raise InvalidInput(f"must be a take (as returned by takes() or render()) or a take id, got {take!r}", "take")
    return take


def _shot_numbers(shots: int | Iterable[int] | None) -> list[int] | None:
    if shots is None:
        return None
    numbers = [shots] if isinstance(shots, int) else list(shots)
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, int):
            raise InvalidInput(f"must be shot numbers (1 is the first shot), got {number!r}", "shots")
    return numbers


@_in_words
class Project:
    """One project of an open :class:`Studio`. Get it from :meth:`Studio.project` or :meth:`Studio.create_project`."""

    def __init__(self, studio: Studio, info: ProjectInfo) -> None:
        self.studio = studio
        self.id = info.id
        self._created_at = info.created_at

    @property
    def _id(self) -> int:
        """The project's id, once it is known to be this project still: a deleted project's id can be reused."""
        return self.info.id

    def _own_take(self, take: TakeInfo | int) -> int:
        """The id of a take of this project; a take of another project is refused."""
        take_id = _take_id(take)
        shot = storyboard.get_shot(self._core, takes.get_take(self._core, take_id).shot_id)
        if shot.project_id != self._id:
            raise InvalidInput(f"take {take_id} belongs to another project, not to {self.name!r}", "take")
        return take_id

    @property
    def _core(self) -> CoreStudio:
        return self.studio.core

    @property
    def info(self) -> ProjectInfo:
        try:
            info = projects_service.get_project(self._core, self.id)
        except NotFound:
            info = None
        if info is None or info.created_at != self._created_at:
            raise NotFound(f"project {self.id} was deleted; open the project again by name")
        return info

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        try:
            info = self.info
        except NotFound:
            return f"<Project {self.id} (deleted)>"
        return (
            f"<Project {info.name!r}: {info.shot_count} shot(s), {info.character_count} character(s), "
            f"{info.width}x{info.height} at {info.fps} fps>"
        )

    def rename(self, new_name: str) -> ProjectInfo:
        return projects_service.rename_project(self._core, self._id, new_name)

    def settings(self, *, width: int | None = None, height: int | None = None, fps: int | None = None) -> ProjectInfo:
        """Change the size or frame rate new takes render at; existing takes keep theirs."""
        return projects_service.update_project_settings(self._core, self._id, width=width, height=height, fps=fps)

    def status(self) -> ProjectStatus:
        return projects_service.project_status(self._core, self._id)

    # The cast.

    def add_character(self, name: str, description: str = "", references: Sequence[str | Path] = ()) -> CharacterInfo:
        """A character with reference images (PNG, JPEG or WebP files), checked and stored together."""
        if isinstance(references, (str, Path)):
            references = [references]
        return cast.add_character(
            self._core, self._id, name, description=description, references=[Path(p) for p in references]
        )

    def characters(self) -> list[CharacterInfo]:
        return cast.list_characters(self._core, self._id)

    # The storyboard.

    def add_shot(self, prompt: str, duration: float, *, position: int | None = None, **fields: Any) -> ShotInfo:
        """A shot at the end of the storyboard (or at 1-based ``position``). Other fields: ``scene``, ``title``,
        ``camera`` (a preset such as ``dolly-in`` or an action string), ``characters`` (names), ``keyframe`` (an
        image file), ``keyframe_character`` (use that character's first reference) and ``continue_from_previous``
        (start from the last frame of the previous shot's approved take)."""
        return storyboard.add_shot(self._core, self._id, position=position, prompt=prompt, duration=duration, **fields)

    def shot(self, number: int) -> ShotInfo:
        """The shot at 1-based ``number`` in the storyboard."""
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise InvalidInput(f"must be a shot number (1 is the first shot), got {number!r}", "shot")
        page = storyboard.list_shots(self._core, self._id, offset=number - 1, limit=1)
        if not page.items:
            raise NotFound(f"project {self.name!r} has no shot {number}; it has {page.total}")
        return page.items[0]

    def update_shot(self, number: int, **fields: Any) -> ShotInfo:
        return storyboard.update_shot(self._core, self.shot(number).id, **fields)

    def move_shot(self, number: int, to_number: int) -> list[ShotInfo]:
        return storyboard.move_shot(self._core, self.shot(number).id, to_number)

    def delete_shot(self, number: int) -> ShotInfo:
        return storyboard.delete_shot(self._core, self.shot(number).id)

    def shots(self) -> list[ShotInfo]:
        found: list[ShotInfo] = []
        while True:
            page = storyboard.list_shots(self._core, self._id, offset=len(found), limit=PAGE)
            found += page.items
            if not page.items or len(found) >= page.total:
                return found

    def storyboard(self) -> Table:
        """The shot list as a table."""
        return Table(
            ("shot", "scene", "title", "seconds", "camera", "characters", "takes", "approved take", "stale"),
            (
                (
                    s.number,
                    s.scene,
                    s.title,
                    s.duration,
                    s.camera,
                    ", ".join(s.characters),
                    s.take_count,
                    s.approved_take_id,
                    s.stale,
                )
                for s in self.shots()
            ),
        )

    # Takes.

    def render(
        self,
        shots: int | Iterable[int] | None = None,
        *,
        takes: int = 1,
        backend: str = "animatic",
        seed: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        refiner: bool = False,
        priority: int = 0,
        wait: bool = True,
        progress: bool = True,
    ) -> list[TakeInfo]:
        """Queue ``takes`` takes of each shot (all shots when ``shots`` is None; a number, or several) and, with
        ``wait``, render them now with a progress bar. Returns the takes (queued ones when not waiting).

        Raises :class:`RenderFailed` when a take failed (the others are rendered and kept). Interrupting the wait
        cancels the takes not rendered yet.
        """
        settings = render_queue.RenderSettings(backend=backend, steps=steps, guidance=guidance, refiner=refiner)
        jobs = render_queue.queue_renders(
            self._core,
            self._id,
            shots=_shot_numbers(shots),
            takes=takes,
            settings=settings,
            seed=seed,
            priority=priority,
        )
        return self.studio._finish(jobs, wait=wait, progress=progress)

    # Keyframes.

    def keyframes(
        self,
        shots: int | Iterable[int] | None = None,
        *,
        candidates: int = 4,
        backend: str = "compose",
        last_frames: bool = False,
        seed: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        priority: int = 0,
        wait: bool = True,
        progress: bool = True,
    ) -> list[keyframes.PictureInfo]:
        """Draw ``candidates`` candidates of each shot's first frame (and with ``last_frames`` its last frame) from
        its cast, with a keyframe backend (``compose``, ``qwen-image-edit``, ``flux2-klein``); with ``wait``, now.
        Returns the candidates, scored for identity against the cast as they land."""
        settings = keyframes.DrawSettings(backend=backend, steps=steps, guidance=guidance)
        jobs = keyframes.queue_keyframes(
            self._core,
            self._id,
            shots=_shot_numbers(shots),
            candidates=candidates,
            settings=settings,
            frames=("first", "last") if last_frames else ("first",),
            seed=seed,
            priority=priority,
        )
        return self.studio._finish_pictures(jobs, wait=wait, progress=progress)

    def candidates(self, shot: int | None = None) -> list[keyframes.PictureInfo]:
        """The keyframe candidates, in storyboard order (of one shot when asked)."""
        return keyframes.list_keyframes(self._core, self._id, shot_number=shot)

    def approve_keyframe(self, candidate: keyframes.PictureInfo | int) -> keyframes.PictureInfo:
        """Make a candidate its shot's keyframe (or last frame); a character's view is kept as a reference."""
        return keyframes.approve_keyframe(self._core, _picture_id(candidate))

    def sheet(
        self,
        character: str,
        *,
        views: Sequence[str] = ("front", "three-quarter", "profile", "full-figure"),
        candidates: int = 1,
        backend: str = "qwen-image-edit",
        seed: int | None = None,
        wait: bool = True,
        progress: bool = True,
    ) -> list[keyframes.PictureInfo]:
        """Draw a character sheet: further views of ``character`` from its photos, scored against them. Keep the
        good ones with :meth:`approve_keyframe`."""
        jobs = keyframes.queue_sheet(
            self._core,
            self._id,
            character,
            views=views,
            candidates=candidates,
            settings=keyframes.DrawSettings(backend=backend),
            seed=seed,
        )
        return self.studio._finish_pictures(jobs, wait=wait, progress=progress)

    def render_again(self, take: TakeInfo | int, *, wait: bool = True, progress: bool = True) -> list[TakeInfo]:
        """A new take with the same backend, settings, seed and input pictures as ``take``."""
        job = render_queue.render_again(self._core, self._own_take(take))
        return self.studio._finish([job], wait=wait, progress=progress)

    def takes(self, shot: int | None = None, *, status: str | None = None) -> list[TakeInfo]:
        """Takes in storyboard order, then take number; of one shot, or with one status, when asked."""
        found: list[TakeInfo] = []
        while True:
            page = takes.list_takes(
                self._core, self._id, shot_number=shot, status=status, offset=len(found), limit=PAGE
            )
            found += page.items
            if not page.items or len(found) >= page.total:
                return found

    def jobs(self) -> list[render_queue.JobInfo]:
        """The project's render jobs: running, then queued in the order they will run, then finished."""
        return render_queue.list_jobs(self._core, self._id)

    def cancel(self, job: render_queue.JobInfo | int) -> render_queue.JobInfo:
        return render_queue.cancel_job(self._core, job.id if isinstance(job, render_queue.JobInfo) else job)

    def show(self, take: TakeInfo | int, *, width: int | None = None) -> Any:
        """A player for a take's video, for a notebook cell."""
        return show(self.studio.take(self._own_take(take)), width=width)

    # Review.

    def render_until(
        self,
        until: str = "identity>=0.7",
        *,
        max_takes: int = 4,
        shots: int | Iterable[int] | None = None,
        backend: str = "animatic",
        seed: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        refiner: bool = False,
        approve: bool = True,
        progress: bool = True,
    ) -> retakes.RetakeReport:
        """Render each shot (all when ``shots`` is None) take by take until one clears ``until`` for every character
        in it (``"identity>=0.7"``: the face recognizer's calibrated score), at most ``max_takes`` new takes a shot.
        The clearing take is approved unless ``approve`` is False. Returns the report: per shot, whether it cleared,
        the clearing (else the best) take, each character's score and verdict; ``report.not_cleared`` lists the shots
        that never reached the bar. Chained shots wait for the shot they continue from.
        """
        settings = render_queue.RenderSettings(backend=backend, steps=steps, guidance=guidance, refiner=refiner)
        return retakes.render_until(
            self._core,
            self._id,
            until,
            max_takes=max_takes,
            shots=_shot_numbers(shots),
            settings=settings,
            seed=seed,
            approve=approve,
            wait=lambda core, ids: self.studio._watch(ids, progress=progress),
        )

    def score(self, shot: int | None = None, *, embedder: str | None = None, rescore: bool = False) -> Scores:
        """Consistency scores of the finished takes (computing those not scored yet), with the best per shot."""
        found = scoring.score_project(self._core, self._id, shot_number=shot, embedder=embedder, rescore=rescore)
        return Scores(found)

    def approve(self, take: TakeInfo | int) -> TakeInfo:
        """Make this take its shot's approved one (replacing an earlier approval)."""
        return takes.approve_take(self._core, self._own_take(take))

    def approve_best(self, *, embedder: str | None = None, keep_approved: bool = True) -> list[TakeInfo]:
        """Approve the best-scoring take of each shot, in storyboard order, and return the takes approved now.

        A shot that continues from the previous one only considers takes that started from the previous shot's
        take as it now stands (its approval, perhaps made a moment before); a shot with none such is left for you to
        render again. With ``keep_approved`` a shot's approval is kept, unless it no longer continues from the
        take before it. The same service as ``python app.py approve --best`` and the Takes tab's button.
        """
        return scoring.approve_best(self._core, self._id, embedder=embedder, keep_approved=keep_approved)

    # The cut, export and bundles.

    def cut(self, shot: int | None = None, **values: Any) -> Any:
        """The cut kept with the project: each shot's in and out points (seconds into its approved take), the
        dissolve into it (None: the export's crossfade, 0: a hard cut) and a title card before it.

        ``film.cut()`` shows it; ``film.cut(3, cut_in=0.5, cut_out=2.0, crossfade=0.5, card="Night")`` changes
        shot 3 (``cut_out=None`` keeps the take to its end, ``card=""`` removes the card). Exports use it.
        """
        if shot is not None:
            cut.set_cut(self._core, self._id, shot, **values)
        elif values:
            raise InvalidInput("name the shot to change, e.g. film.cut(3, cut_in=0.5)", "shot")
        columns = ["shot", "title", "in", "out", "crossfade", "card"]
        return Table(
            columns, [[row[c] for c in columns] for row in (i.to_json() for i in cut.the_cut(self._core, self._id))]
        )

    def export(
        self,
        out: str | Path | None = None,
        *,
        timeline: str | Path | bool | None = None,
        contact_sheet: str | Path | bool | None = None,
        crossfade: float = 0.0,
        titles: bool = False,
        audio: str | Path | None = None,
        allow_missing: str | None = None,
        self_contained: bool = False,
        options: ExportOptions | None = None,
        progress: bool = True,
    ) -> ExportResult:
        """The approved takes in shot order as an mp4 (``out``, default ``exports/<project>/`` in the data
        directory), and optionally a timeline (``.otio``, ``.xml``, ``.edl`` or ``.kdenlive``; ``True`` for an
        OpenTimelineIO file beside the film) and a contact sheet (``.png``/``.pdf``, or ``True``).

        ``options`` (an :class:`~projects.edit_plan.ExportOptions`) replaces the keyword options when given.
        Every output path is checked before anything is encoded.
        """
        with self._output_stem(out) as stem:
            if timeline is True:
                timeline = f"{stem}.otio"
            if contact_sheet is True:
                contact_sheet = f"{stem}-storyboard.png"
            if options is None:
                options = ExportOptions(
                    crossfade=crossfade,
                    titles=titles,
                    audio=Path(audio) if audio is not None else None,
                    allow_missing=allow_missing,
                )
            with _StageBar(progress) as bar:
                made = export.export_project(
                    self._core,
                    self._id,
                    out or f"{stem}.mp4",
                    timeline=None if timeline is False else timeline,
                    contact_sheet=None if contact_sheet is False else contact_sheet,
                    options=options,
                    self_contained=self_contained,
                    progress=bar.report,
                )
            return ExportResult(made.film, made.timeline, made.contact_sheet)

    @contextlib.contextmanager
    def _output_stem(self, out: str | Path | None) -> Iterator[Path]:
        """Where outputs asked for with True go: beside ``out``, else in ``exports/<project>/``, a folder made
        for the request and removed again if the request fails before writing anything there."""
        if out is not None:
            yield Path(out).with_suffix("")
            return
        stem = export.export_stem(self._core, self.name, create=False)
        created = not stem.parent.exists()
        stem.parent.mkdir(parents=True, exist_ok=True)
        try:
            yield stem
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    stem.parent.rmdir()  # only if the failed request left it empty
            raise

    def pack(self, bundle: str | Path, *, takes: str = "approved", overwrite: bool = False) -> bundles.PackResult:
        """Write the project (rows and media; ``takes`` is ``approved``, ``all`` or ``none``) to a zip bundle. An
        existing file is replaced only with ``overwrite``; a path inside the data directory is refused."""
        return bundles.pack_project(self._core, self._id, bundle, takes=takes, overwrite=overwrite)

    def merge(self, bundle: str | Path, *, takes_only: bool = False, force: bool = False) -> bundles.MergeResult:
        """Bring back what a bundle of this project (packed elsewhere) has that is not here yet: takes, and shots
        and characters added there (unless ``takes_only``). A shot that differs keeps this side's version. A bundle
        that does not say it came from this project is merged only with ``force``."""
        return bundles.merge_bundle(self._core, bundle, self._id, takes_only=takes_only, force=force)


_UNITS = {"verify": "take", "copy": "clip", "encode": "frame"}


class _StageBar:
    """Progress reports ``(stage, step, total)`` drawn as one bar that restarts at each stage."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.stage = ""

    def __enter__(self) -> _StageBar:
        return self

    def report(self, stage: str, step: int, total: int) -> None:
        if self.bar is None or stage != self.stage:
            if self.bar is not None:
                self.bar.close()
            self.stage = stage
            self.bar = progress_bar(total or 1, f"export: {stage}", _UNITS.get(stage, "it"), self.enabled)
        self.bar.n = min(step, self.bar.total)
        self.bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


@_in_words
class Studio:
    """An open data directory (created if missing; default ``$CONTINUITY_DATA``, else ``./continuity-data``).

    Use it as a context manager, or call :meth:`close` when done.
    """

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.core = open_studio(data_dir)
        self._server: Any = None
        # Models stay loaded from one render() to the next (a reload of a large model takes minutes).
        self._cache = ModelCache(capacity=1)

    @property
    def data_dir(self) -> Path:
        return self.core.data_dir

    def __repr__(self) -> str:
        return f"<Studio {str(self.data_dir)!r}>"

    def __enter__(self) -> Studio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stop_serving()
        self._cache.unload()
        self.core.close()

    # Projects.

    def projects(self) -> list[ProjectInfo]:
        return projects_service.list_projects(self.core)

    def project(self, name: str | int) -> Project:
        """An existing project, by name (case-insensitive) or id."""
        return Project(self, projects_service.get_project(self.core, name))

    def create_project(
        self,
        name: str,
        *,
        width: int = projects_service.DEFAULT_WIDTH,
        height: int = projects_service.DEFAULT_HEIGHT,
        fps: int = projects_service.DEFAULT_FPS,
        replace: bool = False,
    ) -> Project:
        """A new, empty project. With ``replace``, a project of that name is deleted first (with its takes), in
        the same transaction: if the new one cannot be made, the old one stays."""
        made = projects_service.create_project(self.core, name, width=width, height=height, fps=fps, replace=replace)
        return Project(self, made)

    def delete_project(self, name: str | int) -> ProjectInfo:
        return projects_service.delete_project(self.core, name)

    def import_storyboard(self, path: str | Path, *, project: str | None = None) -> Project:
        """Create (or extend) a project from a storyboard file (``.json`` or ``.csv``), all or nothing."""
        return Project(self, import_storyboard(self.core, Path(path), project=project).project)

    def take(self, take_id: int) -> TakeInfo:
        return takes.get_take(self.core, _take_id(take_id))

    # Rendering.

    def backends(self) -> Table:
        """The video and keyframe backends, whether each can run here, and why not."""
        return Table(
            ("backend", "draws", "available", "why not", "weights"),
            (
                (b.name, b.kind, b.available, "" if b.available else b.reason, b.source)
                for b in available_backends(self.core)
            ),
        )

    @property
    def models_dir(self) -> Path:
        """Where backends look for their weights: ``<models>/sana-wm``, ``<models>/wan-i2v``..."""
        return models_dir(self.core)

    def fetch_weights(
        self, backend: str, source: str | Path, *, revision: str | None = None, refiner: bool = True
    ) -> Path:
        """Put a backend's weights where it looks: link a diffusers folder on this machine, or download a hub
        repo (configs, safetensors and tokenizer files only). ``sana-wm`` fetches its refiner (``REPO-refiner``)
        beside it unless ``refiner=False``; a refiner that cannot be fetched is logged, the backbone kept.
        Returns the backbone's folder."""
        fetched = fetch_backend(self.core, backend, source, revision=revision, refiner=refiner)
        if fetched.refiner_problem:
            log.warning("%s is installed; its refiner is not: %s", backend, fetched.refiner_problem)
        return fetched.folder

    def farm(
        self, address: str | None = None, *, workers: int | None = None, gpus_per_worker: float = 1.0
    ) -> dict[str, Any]:
        """Render everything queued (``film.render(..., wait=False)``, ``film.keyframes(..., wait=False)``) on a Ray
        cluster until nothing is queued or rendering: one worker per GPU of this machine, or of the cluster at
        ``address`` (``ray://HOST:10001``, ``HOST:6379`` or ``"auto"``). The same farm as ``python app.py farm``.
        Returns how many jobs ended and the workers that rendered them."""
        from projects.farm import Farm

        with Farm(self.core, address=address, workers=workers, gpus_per_worker=gpus_per_worker) as farm:
            devices = [worker.device for worker in farm.workers]
            ended = farm.run(once=True)
        return {"jobs_ended": ended, "workers": devices, "recovered": farm.recovered}

    def wait(self, items: Iterable[TakeInfo | render_queue.JobInfo | int], *, progress: bool = True) -> list[TakeInfo]:
        """Render (or watch another worker render) until each of these takes is finished: takes as
        ``render(..., wait=False)`` returns them, take ids, or jobs. Returns the takes."""
        jobs = []
        for item in items:
            if isinstance(item, render_queue.JobInfo):
                jobs.append(render_queue.get_job(self.core, item.id))
            elif isinstance(item, TakeInfo) or (isinstance(item, int) and not isinstance(item, bool)):
                jobs.append(render_queue.job_of_take(self.core, _take_id(item)))
            else:
                raise InvalidInput(f"must be takes, take ids or jobs, got {item!r}", "items")
        return self._finish(jobs, wait=True, progress=progress)

    def _watch(self, ids: list[int], *, progress: bool) -> list[render_queue.JobInfo]:
        """Render these jobs now (or watch the page's worker render them), with a progress bar."""
        wake = self._server.worker.wake if self._server is not None else None
        return wait_for_jobs(self.core, ids, progress=progress, wake=wake, cache=self._cache)

    def _finish(self, jobs: list[render_queue.JobInfo], *, wait: bool, progress: bool) -> list[TakeInfo]:
        ids = [job.id for job in jobs]
        if wait:
            done = self._watch(ids, progress=progress)
        else:
            if self._server is not None:
                self._server.worker.wake()
            return render_queue.takes_of_jobs(self.core, ids)
        made = render_queue.takes_of_jobs(self.core, ids)
        failed = [job for job in done if job.state == "failed"]
        if failed:
            lines = "; ".join(f"shot {j.shot_number} take {j.take_number}: {j.error}" for j in failed)
            raise RenderFailed(f"{len(failed)} of {len(done)} take(s) failed: {lines}", made)
        return made

    def _finish_pictures(
        self, jobs: list[render_queue.JobInfo], *, wait: bool, progress: bool
    ) -> list[keyframes.PictureInfo]:
        ids = [job.id for job in jobs]
        if wait:
            done = self._watch(ids, progress=progress)
        else:
            done = jobs
            if self._server is not None:
                self._server.worker.wake()
        drawn = [keyframes.get_keyframe(self.core, job.picture_take_id) for job in done if job.picture_take_id]
        failed = [job for job in done if job.state == "failed"]
        if wait and failed:
            lines = "; ".join(f"{j.what}: {j.error}" for j in failed)
            raise StudioError(f"{len(failed)} of {len(done)} picture(s) failed: {lines}")
        return drawn

    # Bundles.

    def unpack(self, bundle: str | Path, *, as_name: str | None = None) -> Project:
        """Restore a project bundle into this data directory (under ``as_name`` when given)."""
        return self.project(bundles.unpack_bundle(self.core, bundle, as_name=as_name).project_id)

    def merge(
        self, bundle: str | Path, project: str | int | None = None, *, takes_only: bool = False, force: bool = False
    ) -> bundles.MergeResult:
        """Bring a bundle's new takes, shots and characters back into the project it came from (named as in the
        bundle, or ``project``); see :meth:`Project.merge`."""
        return bundles.merge_bundle(self.core, bundle, project, takes_only=takes_only, force=force)

    def verify(self) -> maintenance.MediaReport:
        """Re-hash every stored media file."""
        return maintenance.verify_media(self.core)

    # The page.

    def serve(self, *, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None, share: bool = False) -> Any:
        """Start the studio page from this process and return at once (its worker renders in the background).

        The same rules as ``python app.py serve``: another host than loopback, or ``share`` (a public link), needs
        ``auth="user:password"`` (or ``$CONTINUITY_AUTH``). Returns the running server (``local_url``,
        ``share_url``); :meth:`stop_serving` or :meth:`close` stops it.
        """
        from app.exposure import check_exposure
        from app.server import start_server

        if self._server is not None:
            raise StudioError(f"the studio page is already served at {self._server.local_url}; stop_serving() first")
        exposure = check_exposure(host, auth=auth, share=share)
        self._server = start_server(self.core, exposure, port=port, block=False)
        return self._server

    def stop_serving(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.stop()


def show(item: Any, *, width: int | None = None) -> Any:
    """A video player for a take, an export result or an mp4 path, for a notebook cell."""
    if isinstance(item, ExportResult):
        item = item.film.path
    return show_video(video_path(item), width=width)


@_speaking
def open(data_dir: str | Path | None = None) -> Studio:
    """Open (or create) a data directory: ``studio = continuity.open("my-films")``."""
    return Studio(data_dir)


__all__ = ["ExportResult", "Project", "RenderFailed", "Scores", "Studio", "open", "show"]


def _picture_id(candidate: Any) -> int:
    if isinstance(candidate, keyframes.PictureInfo):
        return candidate.id
    if isinstance(candidate, int) and not isinstance(candidate, bool):
        return candidate
    raise InvalidInput(f"must be a keyframe candidate or its id, got {candidate!r}", "candidate")
