"""How an attached process's end reaches its flush: a normal exit (atexit), a multiprocessing child
that ends by `os._exit` (its finalizers), SIGTERM (flushed, then the handler that was there before
decides how the process ends); and SIGCHLD quiet while the flush runs."""
from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing import util as mp_util
from typing import Any

__all__ = ["ExitHooks", "QuietChildren"]


class QuietChildren:
    """SIGCHLD's Python handler off while the trace flushes. A SIGTERM to the group kills the DataLoader
    workers too, and torch's SIGCHLD handler then raises "DataLoader worker ... is killed" in the main
    thread -- in the middle of the flush, which would leave no trace and no report."""

    def __init__(self) -> None:
        self.prev: Any = None
        if threading.current_thread() is threading.main_thread():
            try:
                self.prev = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            except (ValueError, OSError):
                self.prev = None

    def restore(self) -> None:
        if self.prev is not None:
            try:
                signal.signal(signal.SIGCHLD, self.prev)
            except (ValueError, OSError, TypeError):
                pass


class ExitHooks:
    """Calls `finish` (which must run its flush once, whoever calls) when process `pid` ends."""

    def __init__(self, finish: Callable[[], None], pid: int) -> None:
        self.finish = finish
        self.pid = pid
        self.prev_term: Any = None
        self.flushing = False

    def install(self) -> bool:
        """atexit, a finalizer, and SIGTERM when this is the main thread (else False: no SIGTERM flush)."""
        atexit.register(self.finish)
        mp_util.Finalize(None, self.finish, exitpriority=100)   # a multiprocessing child ends by os._exit
        if threading.current_thread() is threading.main_thread():
            self.prev_term = signal.signal(signal.SIGTERM, self._on_sigterm)
            return True
        return False

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.flushing:            # a second SIGTERM while the first one flushes: let the flush end
            return
        self.flushing = True
        self.finish()
        prev = self.prev_term
        if callable(prev):
            prev(signum, frame)
            return
        if prev == signal.SIG_IGN:
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
