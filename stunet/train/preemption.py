"""SIGTERM -> checkpoint at the next step boundary, then a clean exit (TPU maintenance).

The handler only sets a flag; the loop asks `requested()` after every step, which combines the
flag over all processes (`stunet.parallel.multihost.any_process`) so every host saves the same
step and exits together.
"""

from __future__ import annotations

import signal
import threading

from stunet.parallel import multihost


class PreemptionWatcher:
  """Installs a SIGTERM handler while active (a context manager); restores the old one after."""

  def __init__(self):
    self._flag = threading.Event()
    self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    self._flag.set()

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
    return False

  def request(self) -> None:
    """Same as receiving SIGTERM (for callers that learn of preemption another way)."""
    self._flag.set()

  def requested(self) -> bool:
    """True on all processes once any process got SIGTERM (collective on multi-host)."""
    return multihost.any_process(self._flag.is_set())
