"""What the benchmarks share about the machine: a busy load, and the BLAS in use."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from threadpoolctl import threadpool_info


@contextlib.contextmanager
def busy(n: int) -> Iterator[None]:
    """``n`` processes spinning on a core each (a loaded machine), stopped afterwards."""
    code = "print('spinning', flush=True)\nwhile True: pass"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            proc.stdout.readline()  # it has started spinning
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def blas() -> list[dict[str, Any]]:
    """The BLAS libraries loaded (numpy's and scipy's OpenBLAS): version, kernel, threads."""
    return [
        {k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]


def state() -> dict[str, Any]:
    """CPUs, load average and the OpenBLAS kernel settings of the environment."""
    return {
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "blas": blas(),
    }
