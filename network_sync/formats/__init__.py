"""Readers of instrument files, chosen by name or by sniffing the first bytes.

========  ==============================  ====================================
name      files                           reader
========  ==============================  ====================================
li8100a   LI-8100A / LI-8150 ``.81x``     :func:`li8100a.read_81x`
li8200    LI-8200 Smart Chamber ``.json`` :func:`li8200.read_li8200_json`
li8250    LI-8250 ``.82z`` (+ summary)    :func:`li8250.read_82z`
li78x0    LI-7810 / LI-7820 ``.data``     :func:`li78x0.read_li78x0_data` (stream)
lgr       LGR/ABB ``.txt``                :func:`lgr.read_lgr_txt` (stream)
picarro   Picarro ``.dat``                :func:`picarro.read_picarro_dat` (stream)
========  ==============================  ====================================

The last three are continuous analyser streams (:class:`streams.Stream`): their closures
are cut by a field sheet (:mod:`.sheet`), so :func:`read_file` needs ``sheet=`` for them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from chamberd.controller.errors import DataFileError

from ._common import read_bytes
from .lgr import read_lgr_txt, sniff_lgr
from .li78x0 import read_li78x0_data, sniff_li78x0
from .li8100a import read_81x, sniff_81x
from .li8200 import read_li8200_json, sniff_li8200
from .li8250 import read_82z, read_dense_summary, sniff_82z
from .picarro import read_picarro_dat, sniff_picarro
from .records import (
    Annotation,
    ChamberObservation,
    GasChannel,
    InitialValues,
    InstrumentFlux,
    ReadResult,
)
from .sheet import DEFAULT_SEARCH_S, SheetRow, cut_closures, read_field_sheet
from .streams import Stream, StreamGas

__all__ = [
    "FORMATS",
    "STREAM_FORMATS",
    "Annotation",
    "ChamberObservation",
    "GasChannel",
    "InitialValues",
    "InstrumentFlux",
    "ReadResult",
    "SheetRow",
    "Stream",
    "StreamGas",
    "cut_closures",
    "detect_format",
    "read_81x",
    "read_82z",
    "read_dense_summary",
    "read_field_sheet",
    "read_file",
    "read_li8200_json",
    "read_stream",
]

#: Format name -> (reader, sniffer).
FORMATS: dict[str, tuple[Callable[..., ReadResult], Callable[[bytes], bool]]] = {
    "li8100a": (read_81x, sniff_81x),
    "li8200": (read_li8200_json, sniff_li8200),
    "li8250": (read_82z, sniff_82z),
}

#: Stream format name -> (reader, sniffer): continuous analyser files, cut by a field sheet.
STREAM_FORMATS: dict[str, tuple[Callable[..., Stream], Callable[[bytes], bool]]] = {
    "li78x0": (read_li78x0_data, sniff_li78x0),
    "lgr": (read_lgr_txt, sniff_lgr),
    "picarro": (read_picarro_dat, sniff_picarro),
}
_ALL = {**FORMATS, **STREAM_FORMATS}


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
    for name, (_reader, sniff) in _ALL.items():
        if sniff(head):
            return name
    raise DataFileError(
        f"unknown file format (expected one of {', '.join(_ALL)})", path=path_text, line=1
    )


def read_stream(path: str | os.PathLike[str], fmt: str = "auto") -> Stream:
    """Read a continuous analyser file (``li78x0``, ``lgr``, ``picarro``; auto: sniff it)."""
    name = detect_format(path) if fmt == "auto" else fmt
    if name not in STREAM_FORMATS:
        raise DataFileError(
            f"not an analyser stream ({name}); streams are {', '.join(STREAM_FORMATS)}",
            path=os.fspath(path),
        )
    return STREAM_FORMATS[name][0](path)


def read_file(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    *,
    sheet: str | os.PathLike[str] | None = None,
    search_s: float = DEFAULT_SEARCH_S,
) -> ReadResult:
    """Read an instrument file with the reader for ``fmt`` (``"auto"``: sniff it).

    An analyser stream is cut into closures by the field sheet ``sheet`` (required for
    streams, refused for chamber files, which mark their own closures); ``search_s`` is
    the default half-width of the closure step search.
    """
    name = detect_format(path) if fmt == "auto" else fmt
    if name not in _ALL:
        raise DataFileError(
            f"unknown format {fmt!r}; use auto or one of {', '.join(_ALL)}",
            path=os.fspath(path),
        )
    if name in STREAM_FORMATS:
        if sheet is None:
            raise DataFileError(
                f"a continuous {name} analyser stream: give the field sheet of its closures "
                "(--sheet, see docs/import.md)",
                path=os.fspath(path),
            )
        rows = read_field_sheet(sheet)
        stream = STREAM_FORMATS[name][0](path)
        return cut_closures(stream, rows, sheet_path=os.fspath(sheet), search_s=search_s)
    if sheet is not None:
        raise DataFileError(
            f"a {name} chamber file marks its own closures: --sheet is for analyser streams",
            path=os.fspath(path),
        )
    return FORMATS[name][0](path)
