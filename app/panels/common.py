"""What every panel shares: the open studio, the per-user selection, and turning service errors into
messages in the page."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from projects.errors import StudioError
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
            log.exception("error in %s", function.__name__)
            raise gr.Error(f"Something went wrong ({type(exc).__name__}); the details are in the log.") from None

    return wrapper


def need_project(project_id: int | None) -> int:
    if not project_id:
        raise gr.Error("Open or create a project first (Projects tab).", print_exception=False)
    return int(project_id)


def bump(counter: int | None) -> int:
    return (counter or 0) + 1
