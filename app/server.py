"""Starting the studio in the browser, with its render worker, as far as a checked :class:`Exposure` allows
(:mod:`app.exposure` says who the studio agrees to serve)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.exposure import Exposure
from projects.errors import StudioError
from projects.studio import Studio, open_studio
from projects.worker_thread import WorkerThread

log = logging.getLogger(__name__)

MAX_UPLOAD = "64mb"

# English words for keys Gradio's page asks for but its own strings lack (the page would show the key itself:
# "common.upload" on a file box's upload button, "common.complete" read out by screen readers after an event).
PAGE_STRINGS = {
    "en": {
        "common.upload": "Upload",
        "common.complete": "Complete",
        "common.webcam": "Webcam",
        "common.video": "Video",
        "image.no_webcam_support": "This browser offers no webcam",
        "model3d.drop_to_upload": "Drop a 3D model here to upload it",
    }
}


def serve(data_dir: str | Path | None, exposure: Exposure, *, port: int) -> int:
    """Serve until interrupted (the ``serve`` command), as far as ``exposure`` (checked) allows."""
    studio = open_studio(data_dir)
    try:
        running = start_server(studio, exposure, port=port, block=True)
        try:
            running.stop()
        except KeyboardInterrupt:  # a second Ctrl-C: the take being rendered is queued again at the next start
            log.warning("stopped without waiting for the take being rendered")
            return 130
    finally:
        studio.close()
    return 0


@dataclass
class RunningServer:
    """A studio page served from this process, with its background render worker."""

    local_url: str
    share_url: str | None
    demo: Any
    worker: WorkerThread
    farm: Any = None  # the page's render farm (projects.farm_runner.FarmRunner), when it was given one

    def stop(self) -> None:
        """Close the page and stop the farm and the worker (after the takes they are rendering, if any)."""
        try:
            self.demo.close()
        finally:
            if self.farm is not None and self.farm.running:
                self.farm.stop()
            self.worker.stop()


def start_server(studio: Studio, exposure: Exposure, *, port: int, block: bool) -> RunningServer:
    """Start the page and its render worker on an open studio. ``block`` serves until interrupted (the command
    line); otherwise this returns at once with the server running in threads (a notebook)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the studio phones nobody
    worker = WorkerThread(studio)
    try:
        import gradio as gr
        from starlette.middleware import Middleware

        from app.guard import PageGuard
        from app.ui import build_app
        from projects.farm_runner import FarmRunner

        farm = FarmRunner(studio, local=worker)

        def wake() -> None:
            worker.wake()
            farm.wake()

        demo = build_app(studio, wake_worker=wake, farm=farm)
        log.info("data directory: %s", studio.data_dir)
        log.info(
            "listening on http://%s:%d%s", exposure.host, port, " (with a public share link)" if exposure.share else ""
        )
        worker.start()
        try:
            queued = demo.queue(default_concurrency_limit=4)
            calm_queue(queued)
            _, local_url, share_url = queued.launch(
                server_name=exposure.host,
                server_port=port,
                auth=exposure.auth,
                share=exposure.share,
                allowed_paths=[str(studio.data_dir / "media"), str(studio.data_dir / "exports")],
                max_file_size=MAX_UPLOAD,
                show_error=False,
                app_kwargs={"middleware": [Middleware(PageGuard, allowed_hosts=exposure.allowed_hosts)]},
                prevent_thread_lock=not block,
                quiet=not block,
                i18n=gr.I18n(**PAGE_STRINGS),
            )
        except OSError as exc:  # the port is taken, or the address is not this machine's
            raise StudioError(f"cannot serve on {exposure.host}:{port}: {exc}; choose another port") from exc
    except BaseException:
        worker.stop()
        raise
    return RunningServer(local_url=local_url, share_url=share_url, demo=demo, worker=worker, farm=farm)


# Gradio's event queue looks for work every millisecond when it has none (and for progress every 10 ms), which
# keeps an idle studio at about a tenth of a core. Looking every 50 ms (and 100 ms), as Gradio itself does on
# Windows, answers a click as fast as a person can tell and leaves an idle studio idle.
IDLE_POLL_SECONDS = 0.05
IDLE_PROGRESS_POLL_SECONDS = 0.1


def calm_queue(demo: Any) -> None:
    """Make the page's event queue sleep between looks when it has nothing to do (see above)."""
    queue = getattr(demo, "_queue", None)
    if queue is None:
        return
    if getattr(queue, "sleep_when_free", IDLE_POLL_SECONDS) < IDLE_POLL_SECONDS:
        queue.sleep_when_free = IDLE_POLL_SECONDS
    if getattr(queue, "progress_update_sleep_when_free", IDLE_PROGRESS_POLL_SECONDS) < IDLE_PROGRESS_POLL_SECONDS:
        queue.progress_update_sleep_when_free = IDLE_PROGRESS_POLL_SECONDS
