"""Calibration records in the site store: begin, readings, finish, never half-applied.

A record is ``running`` from :meth:`CalibrationRecords.begin` until it ends ``pass``,
``fail`` or ``incomplete``; the final status, the outbox row (``calibration_outbox``, the
uploader's queue) and the release of the record's hardware locks are one transaction, and
a finished record is never changed. Readings are appended while it runs, each with the
cylinder it was taken on.

``data`` (JSON) of a procedure that measured reference gases carries the inputs of the
corrections (:mod:`chamberd.calibration.corrections`)::

    {"checks": [{"gas": "co2", "at": ISO, "reference": r, "measured": m,
                 "cylinder_id": ...}, ...],          # as found, before any adjustment
     "checks_after": [...],                          # the as-left re-check (adjustments)
     "adjusted": bool}

A record whose process died (``kill -9``, a power cut) stays ``running`` with the pid of
its process; :meth:`CalibrationRecords.recover_stale` (called by the daemon and by every
``chamberd calibrate``) marks it ``incomplete`` and releases its locks once the caller has
put its hardware in the safe state.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chamberd.controller.clock import Clock
from chamberd.controller.errors import ConfigError
from chamberd.controller.store import SiteStore, iso, process_alive

__all__ = ["JSON_COLUMNS", "STATUSES", "CalibrationRecords"]

STATUSES = ("running", "pass", "fail", "incomplete")
#: Columns of ``calibrations`` holding JSON text.
JSON_COLUMNS = ("data", "cylinder_ids", "as_found", "as_left", "stability")
_READING_FIELDS = (
    "step",
    "at",
    "cylinder_id",
    "gas",
    "reference_value",
    "unit",
    "mean",
    "sd",
    "n",
    "drift_per_min",
    "stable_s",
    "stable",
    "data",
)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _software_version() -> str:
    try:
        from importlib.metadata import version

        return version("chamberd")
    except Exception:  # pragma: no cover - a bare checkout
        return "0+unknown"


class CalibrationRecords:
    """The ``calibrations`` and ``calibration_readings`` tables of one site store."""

    def __init__(self, store: SiteStore) -> None:
        self.store = store
        store._migrate()

    # --- writing --------------------------------------------------------------------------

    def begin(
        self,
        *,
        procedure: str,
        started_at: dt.datetime,
        operator: str,
        analyser: str | None = None,
        chamber: str | None = None,
        supervisor: str | None = None,
        instrument: Mapping[str, str] | None = None,
        cylinder_ids: Sequence[str] = (),
        as_found: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        pid: int | None = None,
        calibration_id: str | None = None,
    ) -> str:
        """A new ``running`` record; returns its id (a uuid4)."""
        if not operator or not operator.strip():
            raise ConfigError("calibration: the operator's name is required")
        record_id = calibration_id or str(uuidlib.uuid4())
        instrument = instrument or {}
        row = {
            "id": record_id,
            "analyser": analyser or "",
            "procedure": procedure,
            "performed_at": iso(started_at),
            "operator": operator.strip(),
            "data": _dumps(dict(data or {})),
            "valid_from": iso(started_at),
            "chamber": chamber,
            "supervisor": (supervisor or "").strip() or None,
            "started_at": iso(started_at),
            "status": "running",
            "instrument_model": instrument.get("model"),
            "instrument_serial": instrument.get("serial"),
            "instrument_firmware": instrument.get("firmware"),
            "cylinder_ids": _dumps(list(cylinder_ids)),
            "as_found": _dumps(as_found),
            "software_version": _software_version(),
            "pid": os.getpid() if pid is None else pid,
        }
        names = list(row)
        with self.store.transaction() as conn:
            conn.execute(
                f"INSERT INTO calibrations ({', '.join(names)}) "
                f"VALUES ({', '.join('?' * len(names))})",
                [row[n] for n in names],
            )
        return record_id

    def update(self, calibration_id: str, **values: Any) -> None:
        """Change columns of a running record (instrument, cylinders, as found, data)."""
        if "instrument" in values:
            instrument = values.pop("instrument") or {}
            values.update(
                instrument_model=instrument.get("model"),
                instrument_serial=instrument.get("serial"),
                instrument_firmware=instrument.get("firmware"),
            )
        record = {k: _dumps(v) if k in JSON_COLUMNS else v for k, v in values.items()}
        if not record:
            return
        names = list(record)
        with self.store.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE calibrations SET {', '.join(f'{n} = ?' for n in names)} "
                "WHERE id = ? AND status = 'running'",
                [*(record[n] for n in names), calibration_id],
            )
            if not cursor.rowcount:
                raise ConfigError(f"calibration {calibration_id}: not running")

    def add_reading(self, calibration_id: str, *, step: str, at: dt.datetime, **values: Any) -> int:
        """Append one reading (``cylinder_id``, ``gas``, ``reference_value``, ``unit``,
        ``mean``, ``sd``, ``n``, ``drift_per_min``, ``stable_s``, ``stable``, ``data``);
        returns its sequence number."""
        unknown = set(values) - set(_READING_FIELDS)
        if unknown:
            raise TypeError(f"unknown reading fields: {sorted(unknown)}")
        row = {"step": step, "at": iso(at), **values}
        if "stable" in row and row["stable"] is not None:
            row["stable"] = int(bool(row["stable"]))
        if "data" in row:
            row["data"] = _dumps(row["data"])
        with self.store.transaction() as conn:
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM calibration_readings "
                "WHERE calibration_id = ?",
                (calibration_id,),
            ).fetchone()[0]
            names = ["calibration_id", "seq", *row]
            conn.execute(
                f"INSERT INTO calibration_readings ({', '.join(names)}) "
                f"VALUES ({', '.join('?' * len(names))})",
                [calibration_id, seq, *row.values()],
            )
        return int(seq)

    def finish(
        self,
        calibration_id: str,
        status: str,
        *,
        at: dt.datetime,
        result: str | None = None,
        reason: str | None = None,
        as_left: Mapping[str, Any] | None = None,
        adjusted: bool = False,
        data: Mapping[str, Any] | None = None,
        stability: Mapping[str, Any] | None = None,
        after: Callable[[Any], None] | None = None,
    ) -> None:
        """End a running record ``pass`` or ``fail`` (its outbox row in the same
        transaction). ``after(conn)`` writes more in that transaction (a new geometry
        version), so what the procedure measured is applied with its record or not at all.
        """
        if status not in ("pass", "fail"):
            raise ValueError(f"finish: status must be 'pass' or 'fail', got {status!r}")
        values: dict[str, Any] = {
            "result": result,
            "reason": reason,
            "adjusted": int(bool(adjusted)),
            "valid_from": iso(at),
        }
        if as_left is not None:
            values["as_left"] = _dumps(as_left)
        if data is not None:
            values["data"] = _dumps(dict(data))
        if stability is not None:
            values["stability"] = _dumps(stability)
        with self.store.transaction() as conn:
            if not self.store.end_calibration(
                calibration_id, status=status, at=at, values=values, conn=conn
            ):
                raise ConfigError(f"calibration {calibration_id}: not running")
            if after is not None:
                after(conn)

    def mark_incomplete(
        self,
        calibration_id: str,
        reason: str,
        *,
        at: dt.datetime,
        data: Mapping[str, Any] | None = None,
    ) -> bool:
        """End a running record ``incomplete`` (nothing it measured is in force); False when
        it was not running."""
        values: dict[str, Any] = {"reason": reason, "result": "incomplete: " + reason}
        if data is not None:
            values["data"] = _dumps(dict(data))
        return self.store.end_calibration(calibration_id, status="incomplete", at=at, values=values)

    def recover_stale(
        self, clock: Clock, *, safe: Callable[[list[str]], None] | None = None
    ) -> list[str]:
        """Records left ``running`` by a process that died: ``safe(scopes)`` puts their
        hardware in the safe state first, then each is marked ``incomplete`` and its locks
        released. Returns their ids."""
        stale = [
            r
            for r in self.store.query(
                "SELECT id, pid FROM calibrations WHERE status = 'running' ORDER BY started_at"
            )
            if r["pid"] is None or not process_alive(int(r["pid"]))
        ]
        locks = self.store.calibration_locks()
        recovered = []
        for record in stale:
            scopes = [lock["scope"] for lock in locks if lock["calibration_id"] == record["id"]]
            if safe is not None and scopes:
                safe(scopes)
            reason = f"the calibration process (pid {record['pid']}) ended without finishing"
            if self.mark_incomplete(record["id"], reason, at=clock.now()):
                recovered.append(record["id"])
        # locks of records that are no longer running (or never were)
        for lock in self.store.stale_calibration_locks():
            self.store.release_calibration_locks(lock["calibration_id"])
        return recovered

    # --- reading --------------------------------------------------------------------------

    def get(self, calibration_id: str) -> dict[str, Any]:
        """One record with its readings (JSON columns decoded); ConfigError if unknown."""
        rows = self.store.query("SELECT * FROM calibrations WHERE id = ?", (calibration_id,))
        if not rows:
            matches = self.store.query(
                "SELECT * FROM calibrations WHERE id LIKE ? ORDER BY started_at",
                (f"{calibration_id}%",),
            )
            if len(matches) != 1:
                what = "no" if not matches else f"{len(matches)}"
                raise ConfigError(f"calibration {calibration_id!r}: {what} matching record")
            rows = matches
        record = self._decode(rows[0])
        record["readings"] = [
            {
                **r,
                "data": _loads(r["data"]),
                "stable": None if r["stable"] is None else bool(r["stable"]),
            }
            for r in self.store.query(
                "SELECT * FROM calibration_readings WHERE calibration_id = ? ORDER BY seq",
                (record["id"],),
            )
        ]
        return record

    def list(
        self,
        *,
        analyser: str | None = None,
        chamber: str | None = None,
        procedure: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Records, newest first (without readings)."""
        where, params = [], []
        for column, value in (
            ("analyser", analyser),
            ("chamber", chamber),
            ("procedure", procedure),
            ("status", status),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM calibrations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY COALESCE(started_at, performed_at) DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._decode(r) for r in self.store.query(sql, params)]

    def latest_in_force(self, analyser: str, when: dt.datetime) -> str | None:
        """The id of the newest finished record of ``analyser`` that carries reference-gas
        checks and was valid at ``when`` (the calibration in force), or None."""
        return self.store.calibration_in_force(analyser, when)

    @staticmethod
    def _decode(row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for column in JSON_COLUMNS:
            if column in out:
                out[column] = _loads(out[column])
        if out.get("adjusted") is not None:
            out["adjusted"] = bool(out["adjusted"])
        return out
