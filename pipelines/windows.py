"""Shots longer than a backend renders in one pass, rendered as consecutive windows.

Each window after the first starts on the previous window's last frame (it is the next window's keyframe), so a
window of ``n`` frames adds ``n - 1`` new frames. The camera path is cut at the window joins, every window gets
its own seed (``seed + i``), and each later window is colour-matched to the one before, because an
image-to-video model re-renders its first frame with a slight shift of exposure and white balance that would
otherwise build up into a visible step at every join.

A long shot is held once: the output array is allocated up front and filled window by window, so only one
window's frames exist besides it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from pipelines.backend import (
    Backend,
    BackendError,
    CancelToken,
    GenerationCancelled,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
    RequestError,
    snap_frames,
)
from pipelines.camera import CameraError, CameraMove, CameraPath, parse_camera

logger = logging.getLogger(__name__)

GAIN_LIMITS = (0.5, 2.0)  # a colour match only corrects drift: a larger gain means the frames differ in content


def plan_windows(num_frames: int, max_frames: int, stride: int) -> list[int]:
    """Window lengths (each ``stride*k+1`` and at most ``max_frames``) that together give ``num_frames``.

    The windows share their join frames, so they make ``1 + sum(n - 1)`` frames: the same ``stride*k+1`` count
    a single pass would snap to, so the overshoot (which the caller trims from the end) is the least possible.
    The work is shared evenly rather than leaving a short last window: a window of a handful of frames gives a
    video model too little to go on, and attention costs grow faster than the window.
    """
    if stride < 1:
        raise ValueError(f"the frame stride must be at least 1, got {stride}")
    if num_frames < 2:
        raise ValueError(f"a shot needs at least 2 frames, got {num_frames}")
    if max_frames < stride + 1:
        raise ValueError(f"a window of at most {max_frames} frames cannot hold {stride}*k+1 frames with k >= 1")
    snapped = snap_frames(num_frames, stride)
    if snapped <= max_frames:
        return [snapped]
    units = (snapped - 1) // stride  # strides of new frames the shot needs
    per_window = (max_frames - 1) // stride  # the most one window adds
    count = -(-units // per_window)
    base, extra = divmod(units, count)
    return [stride * (base + (1 if index < extra else 0)) + 1 for index in range(count)]


def split_camera(camera: str, windows: list[int]) -> list[str]:
    """The camera for each window: a preset repeats; an action string is cut at the joins.

    A window of ``n`` frames takes ``n - 1`` steps of the path. The windows may hold a few steps more than the
    path (the overshoot the caller trims); the path's last move is held over them. A move that crosses a join
    continues in the next window with the same keys.
    """
    if not windows or any(frames < 2 for frames in windows):
        raise ValueError(f"every window needs at least 2 frames, got {windows}")
    path = parse_camera(camera)
    if path.preset is not None:
        return [path.text] * len(windows)
    total = sum(frames - 1 for frames in windows)
    runs = [[move.keys, move.frames or 0] for move in path.moves]
    spelled = sum(count for _, count in runs)
    if spelled > total:
        raise CameraError(
            f"the camera path {path.text!r} spells out {spelled} steps but the windows hold only {total}"
        )
    runs[-1][1] += total - spelled
    cut: list[str] = []
    run = 0
    for frames in windows:
        need = frames - 1
        moves: list[CameraMove] = []
        while need:
            keys, left = runs[run]
            take = min(left, need)
            if moves and moves[-1].keys == keys:
                moves[-1] = CameraMove(keys, (moves[-1].frames or 0) + take)
            else:
                moves.append(CameraMove(keys, take))
            need -= take
            runs[run][1] -= take
            if runs[run][1] == 0:
                run += 1
        cut.append(",".join(move.action(move.frames or 0) for move in moves))
    return cut


def match_colour(frames: np.ndarray, reference: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """``frames`` with each RGB channel moved linearly so that ``anchor`` gets ``reference``'s mean and spread.

    ``anchor`` is this window's first frame and ``reference`` the previous window's last frame: the same
    picture, re-rendered. Per-channel statistics in RGB suffice here (and cost a lookup table per channel, not
    a colour-space conversion of every frame of a long window): Lab's decorrelated channels matter when
    transferring colour between *different* pictures, as Reinhard et al. did, not when undoing a small
    exposure and white-balance drift of the same one. The gain is held to ``GAIN_LIMITS`` so that a
    near-flat frame cannot blow the window up.
    """
    array = np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[3] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {array.dtype} {array.shape}")
    out = np.empty_like(array)
    _apply_lut(array, colour_lut(reference, anchor), out)
    return out


def colour_lut(reference: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """The per-channel lookup table (``(3, 256)`` ``uint8``) that :func:`match_colour` applies."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, 3)
    anc = np.asarray(anchor, dtype=np.float64).reshape(-1, 3)
    if ref.shape[0] == 0 or anc.shape[0] == 0:
        raise ValueError("colour matching needs non-empty frames")
    ref_mean, ref_std = ref.mean(axis=0), ref.std(axis=0)
    anc_mean, anc_std = anc.mean(axis=0), anc.std(axis=0)
    gain = np.divide(ref_std, anc_std, out=np.ones(3), where=anc_std > 1.0)
    gain = np.clip(gain, *GAIN_LIMITS)
    levels = np.arange(256, dtype=np.float64)[None, :]
    mapped = (levels - anc_mean[:, None]) * gain[:, None] + ref_mean[:, None]
    return np.clip(np.round(mapped), 0, 255).astype(np.uint8)


def _apply_lut(frames: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:
    for channel in range(3):
        out[..., channel] = lut[channel][frames[..., channel]]


@dataclass(frozen=True)
class WindowPlan:
    """How a shot longer than one pass is rendered: its windows, each one's camera and request."""

    windows: list[int]
    cameras: list[str]
    requests: list[GenerationRequest]
    end_on: Image.Image | None  # the last frame the final window ends on, where the backend takes one
    keep: int  # frames the take keeps
    planned: int  # frames the windows make together
    notes: list[str]


def plan_render(backend: type[Backend] | Backend, request: GenerationRequest) -> WindowPlan | None:
    """Check ``request`` as :func:`render_long` will render it, before any picture or model exists.

    Returns None for a shot one pass renders (checked by the backend's :meth:`~Backend.check_shape`), else the
    windows, each checked. The pictures (keyframe, last frame) are checked when they are known, by
    :meth:`~Backend.check_inputs`. The render queue calls this for every shot it queues, so a shot that cannot
    be rendered is refused when it is queued, with the same words the renderer would use.
    """
    caps = backend.capabilities
    try:
        windows = plan_windows(request.num_frames, caps.max_frames, caps.frame_stride)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    if len(windows) == 1:
        backend.check_shape(request)
        return None
    notes: list[str] = []
    path = _parse(request.camera)
    try:
        path.check_fits(request.num_frames)
        cameras = split_camera(path.text, windows)
    except CameraError as exc:
        raise RequestError(str(exc)) from None
    end_on = request.last_frame if caps.last_frame else None
    if request.last_frame is not None and end_on is None:
        notes.append(f"{backend.label} cannot end on a given last frame; the shot ends where the camera takes it")
    planned = 1 + sum(frames - 1 for frames in windows)
    count = len(windows)
    requests = [
        replace(
            request,
            num_frames=frames,
            seed=request.seed + index,
            last_frame=end_on if index == count - 1 else None,
            camera=cameras[index],
        )
        for index, frames in enumerate(windows)
    ]
    for index, window in enumerate(requests):
        try:
            backend.check_shape(window)
        except RequestError as exc:
            raise RequestError(f"window {index + 1}/{count}: {exc}") from None
    keep = planned if end_on is not None else request.num_frames
    return WindowPlan(windows, cameras, requests, end_on, keep, planned, notes)


def render_long(
    backend: Backend,
    request: GenerationRequest,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> GenerationResult:
    """Render ``request`` in one pass when the backend can, else in windows chained on their last frames.

    Window ``i`` is seeded ``request.seed + i``; the first starts on the request's keyframe, each later one on
    the previous window's last frame (whose repeat is dropped), colour-matched to it. A last frame, where the
    backend takes one, goes to the final window only, and then the take keeps the snapped length so that it
    still ends on that frame; otherwise the overshoot of the last window is trimmed to ``request.num_frames``.
    Every window is checked before the first is rendered (:func:`plan_render`), so a request that cannot run
    fails before any work. Progress is reported as stage ``"window i/n"``; a cancel is honoured between windows
    and, through the backend, within them.
    """
    progress = progress or _no_progress
    cancel = cancel or CancelToken()
    plan = plan_render(backend, request)
    if plan is None:
        return backend.generate(request, progress=progress, cancel=cancel)
    backend.check_inputs(replace(request, last_frame=plan.end_on))
    windows, cameras, window_requests, end_on = plan.windows, plan.cameras, plan.requests, plan.end_on
    keep, planned, count, notes = plan.keep, plan.planned, len(plan.windows), list(plan.notes)

    output: np.ndarray | None = None
    filled = made = 0  # frames kept, and frames the windows gave
    timings: dict[str, float] = {}
    peak: dict[str, int] = {}
    window_parameters: list[dict[str, Any]] = []
    provenance: Any = None
    for index, window in enumerate(window_requests):
        if cancel.cancelled:
            raise GenerationCancelled(f"cancelled after {index} of {count} windows")
        if output is not None:
            window = replace(window, keyframe=Image.fromarray(output[filled - 1].copy()))
        logger.info("rendering window %d/%d: %d frames, seed %d", index + 1, count, window.num_frames, window.seed)
        result = backend.generate(window, progress=_window_progress(progress, index, count), cancel=cancel)
        frames = result.frames
        if output is None:
            output = np.empty((keep, *frames.shape[1:]), dtype=np.uint8)
        elif frames.shape[1:] != output.shape[1:]:
            raise BackendError(f"window {index + 1} came out {frames.shape[1:]}, not {output.shape[1:]}")
        # A window normally repeats its keyframe as its first frame; a refiner that drops the anchor frame
        # (SANA-WM's) returns one frame fewer, all of them new.
        new = frames[1:] if index and frames.shape[0] == window.num_frames else frames
        made += new.shape[0]
        take = min(new.shape[0], keep - filled)
        if index == 0:
            output[:take] = new[:take]
        else:
            start = time.perf_counter()
            lut = colour_lut(output[filled - 1], frames[0])
            _apply_lut(new[:take], lut, output[filled : filled + take])
            timings["colour_match"] = timings.get("colour_match", 0.0) + time.perf_counter() - start
        filled += take
        for stage, seconds in result.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
        for name, value in result.peak_memory.items():
            peak[name] = max(peak.get(name, 0), value)
        parameters = dict(result.parameters)
        provenance = parameters.pop("provenance", provenance)
        window_parameters.append(parameters)
        notes.extend(f"window {index + 1}: {note}" for note in result.notes)
        del result, frames, new

    assert output is not None
    notes.insert(
        0,
        f"rendered in {count} windows of {', '.join(map(str, windows))} frames, each starting on the previous "
        "window's last frame and colour-matched to it",
    )
    if made > filled:
        notes.append(f"the last window's final {made - filled} frames were trimmed to {filled}")
    if end_on is not None and planned > request.num_frames:
        notes.append(f"{request.num_frames} frames became {planned} so that the shot ends on the given last frame")
    if filled < keep:
        notes.append(f"the backend gave {filled} frames, not {keep}")
    peak["frames_bytes"] = int(output.nbytes)
    parameters = request.parameters() | {
        "num_frames": filled,
        "backend": backend.name,
        "windows": windows,
        "window_seeds": [window.seed for window in window_requests],
        "window_cameras": cameras,
        "window_parameters": window_parameters,
    }
    if provenance is not None:
        parameters["provenance"] = provenance
    return GenerationResult(
        frames=output[:filled],
        fps=request.fps,
        parameters=parameters,
        timings=timings,
        peak_memory=peak,
        notes=tuple(dict.fromkeys(notes)),
    )


def _parse(camera: str) -> CameraPath:
    try:
        return parse_camera(camera)
    except CameraError as exc:
        raise RequestError(str(exc)) from None


def _window_progress(progress: ProgressFn, index: int, count: int) -> ProgressFn:
    stage = f"window {index + 1}/{count}"

    def report(inner_stage: str, step: int, total: int) -> None:
        del inner_stage  # the backend's own stage (backbone, refiner) is within the window
        progress(stage, step, total)

    return report


def _no_progress(stage: str, step: int, total: int) -> None:
    del stage, step, total
