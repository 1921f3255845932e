"""The animatic backend: a shot pre-visualised by moving its keyframe along the camera path, on the CPU.

Animatics are how films are storyboarded: the keyframe (or a character's reference image) pushed, panned
and tilted over the shot's length, with its title as a caption. The studio uses it where there is no GPU or
no weights, so every part of the studio (queue, review, scoring, export) works everywhere, and it shares the
camera grammar with the diffusion backends, so a shot blocked out here moves the same way there.

The camera is approximated in 2D: W/S zoom, A/D truck and J/L pan sideways (at different speeds, so an
orbit -- a truck against a pan -- drifts slowly while it rolls a little), I/K tilt. The view is kept inside
the image, so no frame ever shows a border: the first frame is the keyframe itself (so a shot that continues
from another starts exactly where that one ended), and sideways moves push in a little as they start, to
have room to move. The seed drives a slight hand-held sway that grows from nothing over the first second:
the same seed gives the same frames, another seed another take.
"""

from __future__ import annotations

import math
import time
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipelines.backend import (
    Backend,
    CancelToken,
    Capabilities,
    GenerationCancelled,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
)
from pipelines.camera import keys_per_step, parse_camera

ZOOM_PER_STEP = 0.006  # W: about 10% closer per second at 16 fps
TRUCK_PER_STEP = 0.0025  # A/D, as a fraction of the view's width
PAN_PER_STEP = 0.004  # J/L
TILT_PER_STEP = 0.004  # I/K, as a fraction of the view's height
ROLL_PER_STEP = math.radians(0.03)  # an orbit's lean
PAN_ZOOM = 1.15  # sideways moves push in to this zoom, so the view has room to move inside the picture
MAX_ZOOM = 4.0
SWAY = 0.004  # hand-held sway amplitude, as a fraction of the view
SWAY_RAMP_FRAMES = 16
SIDEWAYS = frozenset("adjlik")
PROGRESS_EVERY = 8  # frames between progress reports


class AnimaticBackend(Backend):
    name = "animatic"
    label = "Animatic"
    capabilities = Capabilities(
        image_to_video=True,
        text_only=True,
        reference_images=0,
        last_frame=False,
        camera_control="2d",
        refiner=False,
        max_frames=481,  # 30 s at 16 fps in one pass; longer shots render in windows
        frame_stride=1,
        size_multiple=8,
        max_side=4096,
    )

    def _generate(self, request: GenerationRequest, progress: ProgressFn, cancel: CancelToken) -> GenerationResult:
        start = time.perf_counter()
        source = _source_image(request)
        steps = request.num_frames - 1
        held = keys_per_step(parse_camera(request.camera), steps)
        views = _camera_views(held, source.size, (request.width, request.height), request.seed)
        caption = _caption_layer(request) if request.caption else None
        frames = np.empty((request.num_frames, request.height, request.width, 3), dtype=np.uint8)
        size = (request.width, request.height)
        for index, view in enumerate(views):
            if cancel.cancelled:
                raise GenerationCancelled(f"cancelled after {index} of {request.num_frames} frames")
            frame = source.transform(size, Image.Transform.AFFINE, view, resample=Image.Resampling.BILINEAR)
            if caption is not None:
                frame.paste(caption[0], caption[1], caption[0])
            frames[index] = np.asarray(frame)
            if index % PROGRESS_EVERY == 0 or index == request.num_frames - 1:
                progress("animatic", index + 1, request.num_frames)
        seconds = time.perf_counter() - start
        parameters = request.parameters() | {"backend": self.name, "camera_steps": steps}
        return GenerationResult(
            frames=frames,
            fps=request.fps,
            parameters=parameters,
            timings={"render": seconds},
            peak_memory={"frames_bytes": int(frames.nbytes)},
        )


def _source_image(request: GenerationRequest) -> Image.Image:
    """The keyframe in RGB, scaled so that it covers the frame at the deepest zoom without upsampling more
    than needed; without a keyframe, a title card in colours drawn from the prompt."""
    width, height = request.width, request.height
    if request.keyframe is None:
        return _title_card(request.prompt, width, height)
    image = request.keyframe.convert("RGB")
    cover = max(width / image.width, height / image.height)
    want = cover * 2.0  # room for a 2x zoom at full detail
    if want < 1.0:
        image = image.resize((max(1, round(image.width * want)), max(1, round(image.height * want))), Image.LANCZOS)
    return image


def _title_card(prompt: str, width: int, height: int) -> Image.Image:
    seed = zlib.crc32(prompt.encode("utf-8"))
    rng = np.random.default_rng(seed)
    top, bottom = rng.integers(30, 200, size=3), rng.integers(30, 200, size=3)
    ramp = np.linspace(0.0, 1.0, height * 2, dtype=np.float32)[:, None, None]
    gradient = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    card = Image.fromarray(np.broadcast_to(gradient, (height * 2, width * 2, 3)).copy())
    draw = ImageDraw.Draw(card)
    font = ImageFont.load_default(size=max(12, height // 10))
    text = prompt if len(prompt) <= 60 else prompt[:57] + "..."
    draw.text((width, height), text, fill=(255, 255, 255), font=font, anchor="mm")
    return card


def _camera_views(
    held: list[frozenset[str]], source_size: tuple[int, int], out_size: tuple[int, int], seed: int
) -> list[tuple[float, ...]]:
    """One affine map (output pixel -> source pixel) per frame, following the held keys step by step."""
    src_w, src_h = source_size
    out_w, out_h = out_size
    cover = min(src_w / out_w, src_h / out_h)  # source pixels per output pixel when the view just fits
    zoom, cx, cy, roll = 1.0, src_w / 2, src_h / 2, 0.0
    states = [(zoom, cx, cy, roll)]
    for keys in held:
        scale = cover / zoom
        view_w, view_h = out_w * scale, out_h * scale
        if "w" in keys:
            zoom *= 1 + ZOOM_PER_STEP
        if "s" in keys:
            zoom /= 1 + ZOOM_PER_STEP
        if keys & SIDEWAYS and zoom < PAN_ZOOM and "s" not in keys:
            zoom = min(PAN_ZOOM, zoom * (1 + 2 * ZOOM_PER_STEP))
        dx = (("d" in keys) - ("a" in keys)) * TRUCK_PER_STEP + (("l" in keys) - ("j" in keys)) * PAN_PER_STEP
        dy = (("k" in keys) - ("i" in keys)) * TILT_PER_STEP
        cx += dx * view_w
        cy += dy * view_h
        lateral = ("a" in keys or "d" in keys) and ("j" in keys or "l" in keys)
        if lateral:
            roll += ROLL_PER_STEP * (1 if "l" in keys else -1)
        zoom = min(max(zoom, 1.0), MAX_ZOOM)
        states.append((zoom, cx, cy, roll))
    sway = _sway(len(states), seed)
    views = []
    for (zoom, cx, cy, roll), (sx, sy) in zip(states, sway, strict=True):
        # The sway pushes in just enough to have room to sway in: nothing on the first frame, where it is 0.
        scale = cover / (zoom * (1 + 2 * (abs(sx) + abs(sy))))
        half_w, half_h = out_w * scale / 2, out_h * scale / 2
        cx, cy = cx + sx * half_w * 2, cy + sy * half_h * 2
        # Keep the rotated view inside the image: its bounding box grows with the roll.
        cos, sin = math.cos(roll), math.sin(roll)
        extent_x = half_w * abs(cos) + half_h * abs(sin)
        extent_y = half_w * abs(sin) + half_h * abs(cos)
        cx = min(max(cx, extent_x), src_w - extent_x) if src_w > 2 * extent_x else src_w / 2
        cy = min(max(cy, extent_y), src_h - extent_y) if src_h > 2 * extent_y else src_h / 2
        a, b = scale * cos, -scale * sin
        d, e = scale * sin, scale * cos
        views.append((a, b, cx - a * out_w / 2 - b * out_h / 2, d, e, cy - d * out_w / 2 - e * out_h / 2))
    return views


def _sway(count: int, seed: int) -> np.ndarray:
    """A smooth random walk (hand-held camera), the same for the same seed."""
    rng = np.random.default_rng(seed)
    knots = max(2, count // 24 + 2)
    points = rng.uniform(-SWAY, SWAY, size=(knots, 2))
    positions = np.linspace(0, knots - 1, count)
    walk = np.stack([np.interp(positions, np.arange(knots), points[:, axis]) for axis in (0, 1)], axis=1)
    ramp = np.clip(np.arange(count) / SWAY_RAMP_FRAMES, 0.0, 1.0)[:, None]  # the first frame is not moved
    return walk * ramp


def _caption_layer(request: GenerationRequest) -> tuple[Image.Image, tuple[int, int]]:
    """The caption as an RGBA strip and where it goes (bottom centre)."""
    font = ImageFont.load_default(size=max(10, request.height // 18))
    text = request.caption if len(request.caption) <= 80 else request.caption[:77] + "..."
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    pad = max(4, request.height // 60)
    strip = Image.new("RGBA", (min(request.width, right - left + 2 * pad), bottom - top + 2 * pad), (0, 0, 0, 150))
    ImageDraw.Draw(strip).text((pad - left, pad - top), text, fill=(255, 255, 255, 255), font=font)
    x = (request.width - strip.width) // 2
    y = request.height - strip.height - pad * 2
    return strip, (x, y)
