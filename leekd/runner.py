"""Running a ``Leekd``: in the foreground with signal handling, or in a thread for tests.

Signal handlers only ask for the stop; the first one is graceful, a second one forces it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
import warnings
from collections.abc import Callable

from .app import Leekd
from .memory import large_buffers_off_heap

log = logging.getLogger("leekd.server")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop (a dependency where it builds), else asyncio's own loop.

    Measured with scripts/bench: with eight clients at once it takes about a quarter off
    the server's CPU per task and half off the push p50; it costs 1–2 MiB of resident memory.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(app: Leekd, ready: Callable[[Leekd], None] | None = None) -> None:
    """Run in the foreground until SIGTERM/SIGINT (a second one forces the stop).

    ``ready`` is called once leekd listens (``leekd start`` uses it to tell its parent).
    """
    large_buffers_off_heap()  # this process is leekd's own: its allocator is ours to tune
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        loop = runner.get_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, _on_signal, app, sig)
        runner.run(app.serve(ready=ready))


def _on_signal(app: Leekd, sig: int) -> None:
    name = signal.Signals(sig).name
    if app.stopping:
        log.warning("%s again: stopping now, running tasks stay queued", name)
        app.request_stop(force=True)
    else:
        log.info("%s: stopping gracefully (send again to force)", name)
        app.request_stop()


class ServerThread:
    """leekd in a background thread of this process (for tests and embedding)."""

    def __init__(self, app: Leekd) -> None:
        self.app = app
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="leekd-main", daemon=True)

    def _main(self) -> None:
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                runner.run(self.app.serve(ready=lambda _: self._ready.set()))
        except BaseException as exc:  # reported to the starter
            self._error = exc
            self._ready.set()
        finally:
            # A peer still in its TLS handshake when the loop stopped never reached our
            # protocol, so the stop could not abort it; its transport is finalised here,
            # quietly, instead of warning later in whatever code the host runs next.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()

    def start(self, timeout: float = 30.0) -> Leekd:
        self.thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"leekd did not start within {timeout}s")
        if self._error is not None:
            raise self._error
        return self.app

    def stop(self, timeout: float = 30.0) -> None:
        self.app.request_stop()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"leekd did not stop within {timeout}s")


__all__ = ["ServerThread", "run"]
