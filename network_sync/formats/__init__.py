"""Readers of instrument files, chosen by name or by sniffing the first bytes.

========  ==============================  ====================================
name      files                           reader
========  ==============================  ====================================
li8100a   LI-8100A / LI-8150 ``.81x``     :func:`li8100a.read_81x`
li8200    LI-8200 Smart Chamber ``.json`` :func:`li8200.read_li8200_json`
li8250    LI-8250 ``.82z`` (+ summary)    :func:`li8250.read_82z`
========  ==============================  ====================================
"""

from __future__ import annotations

import os
from collections.abc import Callable

from chamberd.controller.errors import DataFileError

from ._common import read_bytes
from .li8100a import read_81x, sniff_81x
from .li8200 import read_li8200_json, sniff_li8200
from .li8250 import read_82z, read_dense_summary, sniff_82z
from .records import (
    Annotation,
    ChamberObservation,
    GasChannel,
    InitialValues,
    InstrumentFlux,
    ReadResult,
)

__all__ = [
    "FORMATS",
    "Annotation",
    "ChamberObservation",
    "GasChannel",
    "InitialValues",
    "InstrumentFlux",
    "ReadResult",
    "detect_format",
    "read_81x",
    "read_82z",
    "read_dense_summary",
    "read_file",
    "read_li8200_json",
]

#: Format name -> (reader, sniffer).
FORMATS: dict[str, tuple[Callable[..., ReadResult], Callable[[bytes], bool]]] = {
    "li8100a": (read_81x, sniff_81x),
    "li8200": (read_li8200_json, sniff_li8200),
    "li8250": (read_82z, sniff_82z),
}


def detect_format(path: str | os.PathLike[str]) -> str:
    """Name of the format of ``path``, from its first bytes.

    Raises
    ------
    DataFileError
        When the file cannot be opened or matches no known format.
    """
    path_text, head = read_bytes(path, 4096)
    if not head.strip():
        raise DataFileError("empty file: cannot tell its format", path=path_text)
    for name, (_reader, sniff) in FORMATS.items():
        if sniff(head):
            return name
    raise DataFileError(
        f"unknown file format (expected one of {', '.join(FORMATS)})", path=path_text, line=1
    )


def read_file(path: str | os.PathLike[str], fmt: str = "auto") -> ReadResult:
    """Read an instrument file with the reader for ``fmt`` (``"auto"``: sniff it)."""
    name = detect_format(path) if fmt == "auto" else fmt
    if name not in FORMATS:
        raise DataFileError(
            f"unknown format {fmt!r}; use auto or one of {', '.join(FORMATS)}",
            path=os.fspath(path),
        )
    return FORMATS[name][0](path)
