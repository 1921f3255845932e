"""The render farm in a thread of the studio's own process, for the page's Settings: start, stop, and what it is
doing (see :mod:`projects.farm`)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from projects.errors import Conflict, InvalidInput, StudioError
from projects.farm import Farm, check_settings
from projects.studio import Studio

log = logging.getLogger(__name__)


class FarmRunner:
    """Starts and stops a :class:`Farm` in a thread of this process and says what it is doing.

    While the farm runs, the process's own render worker (``local``) is stopped, so a GPU is never shared by it and
    an actor; it starts again when the farm stops.
    """

    def __init__(self, studio: Studio, local: Any = None) -> None:
        self.studio, self.local = studio, local
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._said = "The farm is not running: the studio's own worker renders the queue."
        self._farm: Farm | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> str:
        farm = self._farm
        if self.running and farm is not None:
            busy = sum(worker.job is not None for worker in farm.workers)
            return f"The farm renders the queue on {len(farm.workers)} worker(s), {busy} busy: " + ", ".join(
                worker.device for worker in farm.workers
            )
        return self._said

    def start(self, address: str | None = None, *, workers: int | None = None, gpus_per_worker: float = 1.0) -> str:
        """Start the farm and wait until its workers are up (or it failed); returns :meth:`status`."""
        if self.running:
            raise Conflict("the farm is already running; stop it first")
        address = (address or "").strip() or None
        if address is not None and not address.startswith(("ray://", "auto")) and ":" not in address:
            raise InvalidInput(f"is not a Ray address (ray://HOST:10001, HOST:6379 or auto): {address!r}", "address")
        check_settings(workers, gpus_per_worker)  # before anything stops or starts
        self._stop.clear()
        self._started.clear()
        if self.local is not None:
            self.local.stop()

        def run() -> None:
            try:
                farm = Farm(self.studio, address=address, workers=workers, gpus_per_worker=gpus_per_worker)
            except (StudioError, OSError) as exc:
                self._said = f"The farm could not start: {exc}"
                self._started.set()
                self._resume_local()
                return
            self._farm = farm
            self._started.set()
            try:
                ended = farm.run(stop=self._stop)
                self._said = f"The farm stopped after ending {ended} job(s): the studio's own worker renders again."
            except Exception as exc:
                log.exception("the farm stopped")
                self._said = f"The farm stopped: {exc}"
            finally:
                self._farm = None
                farm.close()
                self._resume_local()

        self._thread = threading.Thread(target=run, name="render-farm", daemon=True)
        self._thread.start()
        self._started.wait(600)
        return self.status()

    def _resume_local(self) -> None:
        if self.local is not None:
            self.local.start()

    def stop(self) -> str:
        """Stop the farm after the takes being rendered (their actors finish them), and start the own worker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.status()

    def wake(self) -> None:
        farm = self._farm
        if farm is not None:
            farm.wake()
