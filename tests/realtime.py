"""Wall-clock bounds for the few tests that must run in real time.

Such a bound proves "bounded, never hangs", not speed, so it scales with the machine's load
(the 2 cores are shared with the machine's services and other test runs): ``from realtime
import real_time_bound`` (``tests/`` is on ``sys.path``, see ``tests/conftest.py``).
"""

from __future__ import annotations

import os

__all__ = ["real_time_bound"]


def real_time_bound(expected_s: float) -> float:
    """A wall-clock bound for an operation expected to take ``expected_s`` seconds, scaled
    for a loaded machine: such bounds prove "bounded, never hangs", not speed, so they
    grow with the load average per core (and ``CHAMBERD_TEST_TIME_SCALE``, default 1)."""
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    scale = float(os.environ.get("CHAMBERD_TEST_TIME_SCALE", "1"))
    return scale * (expected_s * (3.0 + 2.0 * max(load, 0.0)) + 2.0)
