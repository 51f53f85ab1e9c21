"""One worker thread behind a bounded queue: the writer's way of letting disk work run while the
caller (the model) computes. Items are handled in order; after an error the rest are skipped (no
gaps), and the error is raised on the caller's thread by the next ``put`` or ``drain``."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class BackgroundWorker:
    def __init__(self, work: Callable[[Any], None], depth: int, name: str) -> None:
        self._work, self._depth, self._name = work, depth, name
        self._queue: queue.Queue[tuple[Any] | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def put(self, item: Any) -> None:
        """Queue ``item`` (blocks while ``depth`` items wait, so memory stays bounded)."""
        self._raise()
        if self._thread is None:
            self._queue = queue.Queue(self._depth)
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        assert self._queue is not None
        self._queue.put((item,))

    def _run(self) -> None:
        assert self._queue is not None
        while (boxed := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._work(boxed[0])
                except BaseException as exc:  # noqa: BLE001  re-raised on the caller's thread
                    self._error = exc

    def drain(self) -> None:
        """Wait until every queued item is handled (stops the thread; ``put`` restarts it)."""
        if self._thread is not None:
            assert self._queue is not None
            self._queue.put(None)
            self._thread.join()
            self._thread = self._queue = None
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
