"""The composition root: build a daemon from a configuration, run it, stop it cleanly.

This is the one place that wires drivers, store, alarms and (later) the uploader together.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

from threadpoolctl import threadpool_limits

from .clock import Clock
from .config import SiteConfig
from .daemon import Daemon
from .errors import operator_message
from .hardware import make_actuators, make_analyser, make_aux_sensors
from .store import SiteStore

__all__ = ["JournalFormatter", "Site", "build_site", "configure_logging", "serve"]

#: BLAS threads while the daemon runs (numpy's OpenBLAS would start one per core).
DAEMON_BLAS_THREADS = 1

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message key=value``: journald reads the priority prefix from
    stderr and adds its own timestamps.

    An exception attached to a record is one short line (its type and
    :func:`~chamberd.controller.errors.operator_message`); the traceback is added only when
    logging at DEBUG (``--log-level DEBUG``), on the same line."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        text = f"<{priority}>{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                text += " " + self.formatException(record.exc_info).replace("\n", " | ")
            else:
                text += f" ({type(exc).__name__}: {operator_message(exc)})"
        return text


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its errors reach us translated


@dataclass
class Site:
    cfg: SiteConfig
    clock: Clock
    store: SiteStore
    daemon: Daemon

    def close(self) -> None:
        for analyser in self.daemon.analysers.values():
            with contextlib.suppress(Exception):
                analyser.close()
        for part in (self.daemon.actuators, self.daemon.aux):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.close()
        self.store.close()


def build_site(cfg: SiteConfig, *, clock: Clock, site: Any = None, memory: bool = False) -> Site:
    """Store, drivers and daemon for ``cfg``; ``memory`` uses the in-memory fakes on ``site``."""
    # lazy: a database that cannot be opened yet (a full disk) is the daemon's storage fault
    # (safe state, alarm, retries), not a failed start
    store = SiteStore(cfg.storage.path, site_id=cfg.site.id, lazy=True)
    backend = "memory" if memory else "modbus"
    analysers = {}
    for analyser in cfg.analysers:
        if memory:
            from .hardware.memory import MemoryAnalyser

            analysers[analyser.id] = MemoryAnalyser(site, analyser.id, clock=clock)
        else:
            analysers[analyser.id] = make_analyser(analyser, clock=clock, site=site)
    actuators = make_actuators(cfg, clock=clock, backend=backend, site=site)
    aux = make_aux_sensors(cfg, clock=clock, backend=backend, site=site) if cfg.aux else None
    daemon = Daemon(
        cfg, clock=clock, store=store, analysers=analysers, actuators=actuators, aux=aux
    )
    return Site(cfg, clock, store, daemon)


@contextlib.contextmanager
def _signals(daemon: Daemon) -> Iterator[None]:
    def stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("%s received: stopping", signal.Signals(signum).name)
        daemon.stop_event.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(site: Site, *, until: Any = None) -> None:
    """Run the daemon until SIGTERM/SIGINT (or ``until``); always end in the safe state."""
    daemon = site.daemon
    reason = "stop requested"
    # one closure is fitted at a time: BLAS threads would only contend with the daemon's
    # own threads on a small field computer (see docs/fitting.md, "Threads")
    with _signals(daemon), threadpool_limits(limits=DAEMON_BLAS_THREADS, user_api="blas"):
        try:
            daemon.run(until=until)
        except BaseException as exc:
            reason = f"error: {exc!r}"
            raise
        finally:
            daemon.stop_event.set()
            daemon.wait_idle(timeout_s=60.0)
            daemon.shutdown(reason)
