"""A render worker in a thread of this process: the studio page's, and the one ``render --wait`` and the Python
API's ``render()`` start while they watch their takes.

A device serves one worker at a time (its lock file, see :mod:`projects.worker`). When another worker holds the
device (a ``worker`` command beside the studio, another notebook), this thread does not give up: it tries again
every :data:`RETRY_SECONDS` and starts rendering as soon as the device is free, so queued takes never sit
unrendered because a worker that held the device has gone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError

from pipelines.loading import PipelineCache
from projects.studio import Studio
from projects.worker import RenderWorker, WorkerBusy

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0  # how often a thread whose device is busy looks again


class WorkerThread:
    """Renders the queue on ``device`` in a thread until :meth:`stop` (or until ``until()`` is true).

    ``cache`` keeps models loaded across threads (the Python API's), and then they stay loaded when this stops.
    A failure of the worker itself (not of a take, which only fails that take) ends the thread and is kept in
    :attr:`failure` for the caller to raise.
    """

    def __init__(
        self,
        studio: Studio,
        *,
        device: str = "auto",
        cache: PipelineCache | None = None,
        until: Callable[[], bool] | None = None,
        poll_seconds: float = 2.0,
        retry_seconds: float = RETRY_SECONDS,
        name: str = "render-worker",
    ) -> None:
        self.studio = studio
        self.device = device
        self.cache = cache
        self.until = until
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.failure: BaseException | None = None
        self._name = name
        self._stop = threading.Event()
        self._worker: RenderWorker | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def rendering(self) -> bool:
        """Whether this thread holds its device (and so renders what is queued)."""
        return self._worker is not None

    def start(self) -> bool:
        """Start the thread (again, after :meth:`stop`); True if it holds the device now, False if it waits for
        another worker to let go."""
        if self.alive:
            return self.rendering
        self._stop.clear()
        self.failure = None
        self._try_to_hold()
        if self._worker is None:
            log.info("a render worker already serves %s; this one starts when it stops", self.device)
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self._worker is not None

    def _try_to_hold(self) -> None:
        try:
            worker = RenderWorker(
                self.studio, device=self.device, cache=self.cache, keep_loaded=self.cache is not None
            )
        except WorkerBusy:
            return
        except DBAPIError as exc:  # the database is busy or full: the thread tries again later
            log.warning("the render worker could not start yet (%s)", exc.orig or exc)
            return
        with self._lock:
            self._worker = worker

    def _finished(self) -> bool:
        if self._stop.is_set():
            return True
        try:
            return self.until is not None and self.until()
        except DBAPIError:  # cannot tell now; the worker waits for the database and asks again
            return False

    def _run(self) -> None:
        try:
            while not self._finished():
                if self._worker is None:
                    self._stop.wait(self.retry_seconds)
                    if not self._finished():
                        self._try_to_hold()
                    continue
                self._worker.run(stop=self._stop, until=self.until, poll_seconds=self.poll_seconds)
        except Exception as exc:  # kept for the caller, which raises it
            log.exception("the render worker stopped")
            self.failure = exc
        finally:
            with self._lock:
                worker, self._worker = self._worker, None
            if worker is not None:
                worker.close()

    def wake(self) -> None:
        """Jobs were queued in this process: render them now rather than at the next look."""
        with self._lock:
            if self._worker is not None:
                self._worker.wake()

    def stop(self) -> None:
        """Stop after the take being rendered, if any, and let go of the device.

        The worker lets go of its models only once its thread has ended: a worker closed under a running take
        would leave it rendering on unloaded models.
        """
        self._stop.set()
        self.wake()
        if self._thread is not None:
            if self._thread.is_alive() and self.rendering:
                log.info("waiting for the take being rendered, if any, to finish")
            self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
