"""Starting the studio in the browser, with its render worker, as far as a checked :class:`Exposure` allows
(:mod:`app.exposure` says who the studio agrees to serve)."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.exposure import Exposure
from projects.errors import StudioError
from projects.studio import Studio, open_studio
from projects.worker import RenderWorker, WorkerBusy

log = logging.getLogger(__name__)

MAX_UPLOAD = "64mb"


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
    worker: BackgroundWorker

    def stop(self) -> None:
        """Close the page and stop the worker (after the take it is rendering, if any)."""
        try:
            self.demo.close()
        finally:
            self.worker.stop()


def start_server(studio: Studio, exposure: Exposure, *, port: int, block: bool) -> RunningServer:
    """Start the page and its render worker on an open studio. ``block`` serves until interrupted (the command
    line); otherwise this returns at once with the server running in threads (a notebook)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the studio phones nobody
    worker = BackgroundWorker(studio)
    try:
        from app.ui import build_app

        demo = build_app(studio, wake_worker=worker.wake)
        log.info("data directory: %s", studio.data_dir)
        log.info(
            "listening on http://%s:%d%s", exposure.host, port, " (with a public share link)" if exposure.share else ""
        )
        worker.start()
        try:
            _, local_url, share_url = demo.queue(default_concurrency_limit=4).launch(
                server_name=exposure.host,
                server_port=port,
                auth=exposure.auth,
                share=exposure.share,
                allowed_paths=[str(studio.data_dir / "media"), str(studio.data_dir / "exports")],
                max_file_size=MAX_UPLOAD,
                show_error=False,
                prevent_thread_lock=not block,
                quiet=not block,
            )
        except OSError as exc:  # the port is taken, or the address is not this machine's
            raise StudioError(f"cannot serve on {exposure.host}:{port}: {exc}; choose another port") from exc
    except BaseException:
        worker.stop()
        raise
    return RunningServer(local_url=local_url, share_url=share_url, demo=demo, worker=worker)


class BackgroundWorker:
    """The render worker in a thread of the studio's process, so the page never waits for a render.

    If another worker already serves the device (a ``worker`` command running beside the studio), the page
    still queues jobs and that worker renders them.
    """

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self._stop = threading.Event()
        self._worker: RenderWorker | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self._worker = RenderWorker(self.studio)
        except WorkerBusy as exc:
            log.warning("%s", exc)
            return
        self._thread = threading.Thread(target=self._run, name="render-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._worker is not None
        self._worker.run(stop=self._stop)

    def wake(self) -> None:
        if self._worker is not None:
            self._worker.wake()

    def stop(self) -> None:
        """Stop after the take being rendered, if any. The worker lets go of its models and its device only once
        its thread has ended: a worker closed under a running take would leave it rendering on unloaded models."""
        self._stop.set()
        self.wake()
        if self._thread is not None:
            if self._thread.is_alive():
                log.info("waiting for the take being rendered, if any, to finish")
            self._thread.join()
        if self._worker is not None:
            self._worker.close()
