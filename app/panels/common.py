"""What every panel shares: the open studio, the per-user selection, and turning service errors into
messages in the page."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from projects.errors import StudioError, in_words
from projects.studio import Studio

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".webp"]


@dataclass
class Context:
    """Shared by all panels of one page. ``project`` and ``shot`` are per-user selections (``gr.State``);
    the studio and the worker are the process's, shared by every user on purpose: they are the data."""

    studio: Studio
    wake_worker: Callable[[], None]
    project: gr.State
    shot: gr.State
    changed: gr.State  # bumped after any change, so panels that show the same data refresh
    page: gr.Blocks  # the page itself: what a panel shows from the database is read again each time it loads
    goto: gr.State | None = None  # {"shot": id, "nonce": n}: a request to open that shot's form (from the board)
    tabs: gr.Tabs | None = None  # the page's tabs, which a panel may switch to show what was asked for
    farm: Any = None  # the process's render farm (projects.farm_runner.FarmRunner), when the page runs in a server


def user_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Show a service's refusal as a readable message in the page; anything else is logged, and the user
    is told something went wrong without a stack trace."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except StudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as exc:
            words = in_words(exc)
            if words is not None:
                raise gr.Error(str(words), print_exception=False) from None
            log.exception("error in %s", function.__name__)
            raise gr.Error(f"Something went wrong ({type(exc).__name__}); the details are in the log.") from None

    return wrapper


def need_project(project_id: int | None) -> int:
    if not project_id:
        raise gr.Error("Open or create a project first (Projects tab).", print_exception=False)
    return int(project_id)


def bump(counter: int | None) -> int:
    return (counter or 0) + 1


def picture_input(field: str, **options: Any) -> gr.Image:
    """An image upload (``gr.Image``) whose file, when it is not a picture, gets a message saying so.

    Gradio opens an uploaded image before any callback runs, and a file it cannot open fails there without a
    word in the page (a non-image keyframe made "Add shot" do nothing). The check wraps this one component's
    opening of its upload; a subclass of a Gradio component would write a stub file beside this module.
    """
    image = gr.Image(**options)
    opening = image.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return opening(payload)
        except gr.Error:
            raise
        except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
            name = getattr(payload, "orig_name", None) or "the file"
            log.info("refused an upload that is not a picture: %s", exc)
            raise gr.Error(
                f"{field}: {name} is not a picture the studio can read; choose a PNG, JPEG or WebP image",
                print_exception=False,
            ) from None

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image
