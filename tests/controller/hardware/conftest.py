"""A pseudo-terminal whose master side the test drives, playing the instrument."""

from __future__ import annotations

import os
import select
import tty
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass
class PtyDevice:
    master: int
    url: str

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def received(self, timeout_s: float = 1.0, until: bytes | None = None) -> bytes:
        """Bytes the driver wrote (until ``until`` appears, or the timeout)."""
        out = b""
        while True:
            ready, _, _ = select.select([self.master], [], [], timeout_s)
            if not ready:
                return out
            out += os.read(self.master, 4096)
            if until is not None and until in out:
                return out


@pytest.fixture
def pty_device() -> Iterator[PtyDevice]:
    master, slave = os.openpty()
    tty.setraw(slave)
    url = os.ttyname(slave)
    try:
        yield PtyDevice(master, url)
    finally:
        os.close(master)
        os.close(slave)
