"""Stale data: the one rule by which the laser analysers' drivers tell a new measurement
from an old one repeated.

A laser analyser whose measurement stops often keeps talking: the LI-78x0's broker keeps
publishing the last record, a Picarro answers ``_Meas_GetConcEx`` with the latest (old)
measurement, an LGR/ABB may repeat its last line. Each record carries the instrument's own
time, and a record whose time is not later than the last fresh record's is not a new
measurement: the driver skips it (counted in :attr:`StaleWatch.run` and
:attr:`StaleWatch.total`), and when its read's deadline passes with only such records it
raises :class:`~chamberd.controller.errors.HardwareTimeoutError` with
:meth:`StaleWatch.describe` ("stale data (timestamps stopped at ..., N repeats)"), as a
silent analyser would: to the daemon a stale analyser is a silent one (``analyser_silent``,
the group aborted with its lids open).

>>> watch = StaleWatch()
>>> [watch.fresh(t) for t in (1.0, 2.0, 2.0, 1.5, None, 3.0)]
[True, True, False, False, True, True]
>>> watch.total, watch.run, watch.last
(2, 0, 3.0)
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["StaleWatch"]

T = TypeVar("T")


class StaleWatch(Generic[T]):
    """Remembers the instrument time of the last fresh record.

    ``later(new, last)`` says whether ``new`` is later than ``last`` (``>`` by default; a
    driver whose time stamps order only partly gives its own). A record without a time
    (``None``) is taken as fresh: there is nothing to judge it by.
    """

    def __init__(self, later: Callable[[T, T], bool] = operator.gt) -> None:
        self.later = later
        self.last: T | None = None
        self.run = 0  # stale records since the last fresh one
        self.total = 0  # stale records in all

    def fresh(self, when: T | None) -> bool:
        """True for a new measurement (remembered); False, counted, for a stale one."""
        if when is not None and self.last is not None and not self.later(when, self.last):
            self.run += 1
            self.total += 1
            return False
        if when is not None:
            self.last = when
        self.run = 0
        return True

    def describe(self, label: Any = None) -> str:
        """What a timeout says when the last records were stale (``label``: how the driver
        names the last fresh time; the time itself by default)."""
        shown = self.last if label is None else label
        return f"stale data (timestamps stopped at {shown}, {self.run} repeats)"
