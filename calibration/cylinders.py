"""The site's registry of reference gas cylinders (``chamberd calibrate cylinders``).

Each cylinder: an id (the number painted on it or on its certificate), the gas, the
certified value and its uncertainty, the unit, the scale it is traceable to (e.g.
``WMO X2019`` for CO2), the certificate date, the expiry date, and who entered it when.
A cylinder is never deleted, only retired, so every old calibration record still names a
cylinder the registry knows. A procedure refuses a cylinder that is expired (the day is
after ``expires_on``) or retired: :meth:`Cylinders.usable`.

Zero gas is a cylinder of the gas it is zero for, with value 0 (CO2-free synthetic air or
nitrogen for a CO2 zero).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from chamberd.controller.errors import ConfigError
from chamberd.controller.store import SiteStore, iso

__all__ = ["GAS_UNITS", "Cylinder", "Cylinders"]

#: The gases a cylinder may certify, and the unit its value is given in.
GAS_UNITS = {
    "co2": "umol/mol",
    "h2o": "mmol/mol",
    "ch4": "nmol/mol",
    "n2o": "nmol/mol",
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,63}$")


@dataclass(frozen=True)
class Cylinder:
    id: str
    gas: str
    value: float
    unit: str
    expires_on: dt.date
    entered_by: str
    entered_at: str
    uncertainty: float | None = None
    scale: str | None = None
    certificate_date: dt.date | None = None
    retired_at: str | None = None
    retired_by: str | None = None
    note: str | None = None

    def expired_on(self, day: dt.date) -> bool:
        """True after the expiry date (a cylinder is good on its expiry day)."""
        return day > self.expires_on

    @property
    def label(self) -> str:
        """``CC12345 (co2 401.2 umol/mol, WMO X2019)``."""
        scale = f", {self.scale}" if self.scale else ""
        return f"{self.id} ({self.gas} {self.value:g} {self.unit}{scale})"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("expires_on", "certificate_date"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


def _date(value: Any, field: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"cylinder {field}: {value!r} is not a date (YYYY-MM-DD)") from None


class Cylinders:
    """The ``cylinders`` table of one site store."""

    def __init__(self, store: SiteStore) -> None:
        self.store = store
        store._migrate()

    def add(
        self,
        *,
        cylinder_id: str,
        gas: str,
        value: float,
        expires_on: dt.date | str,
        entered_by: str,
        at: dt.datetime,
        uncertainty: float | None = None,
        unit: str | None = None,
        scale: str | None = None,
        certificate_date: dt.date | str | None = None,
        note: str | None = None,
    ) -> Cylinder:
        """Register a cylinder; every problem of the entry is reported at once."""
        problems = []
        if not _ID.match(cylinder_id or ""):
            problems.append(
                f"id {cylinder_id!r}: letters, digits and _ . - / (at most 64, no spaces)"
            )
        gas = (gas or "").lower()
        if gas not in GAS_UNITS:
            problems.append(f"gas {gas!r}: one of {', '.join(GAS_UNITS)}")
        expected = GAS_UNITS.get(gas)
        if unit is None:
            unit = expected
        elif expected is not None and unit != expected:
            problems.append(f"unit {unit!r}: a {gas} cylinder is certified in {expected}")
        try:
            value = float(value)
            if not 0 <= value < 1e6:
                problems.append(f"value {value:g}: must be >= 0")
        except (TypeError, ValueError):
            problems.append(f"value {value!r}: not a number")
        if uncertainty is not None:
            try:
                uncertainty = float(uncertainty)
                if uncertainty < 0:
                    problems.append(f"uncertainty {uncertainty:g}: must be >= 0")
            except (TypeError, ValueError):
                problems.append(f"uncertainty {uncertainty!r}: not a number")
        try:
            expiry = _date(expires_on, "expires_on")
            if expiry is None:
                problems.append("expires_on: required (the certificate's expiry date)")
        except ConfigError as exc:
            problems.append(str(exc).removeprefix("cylinder "))
            expiry = None
        try:
            certified = _date(certificate_date, "certificate_date")
        except ConfigError as exc:
            problems.append(str(exc).removeprefix("cylinder "))
            certified = None
        if certified is not None and expiry is not None and expiry < certified:
            problems.append(f"expires_on {expiry}: before the certificate date {certified}")
        if not (entered_by or "").strip():
            problems.append("entered_by: who enters the cylinder is required")
        if not problems and self._row(cylinder_id) is not None:
            problems.append(f"id {cylinder_id!r}: already registered (retire it, use a new id)")
        if problems:
            raise ConfigError("cylinder not registered: " + "; ".join(problems))
        assert expiry is not None and unit is not None
        cylinder = Cylinder(
            id=cylinder_id,
            gas=gas,
            value=value,
            unit=unit,
            expires_on=expiry,
            entered_by=entered_by.strip(),
            entered_at=iso(at),
            uncertainty=uncertainty,
            scale=scale or None,
            certificate_date=certified,
            note=note or None,
        )
        row = cylinder.as_dict()
        names = list(row)
        with self.store.transaction() as conn:
            conn.execute(
                f"INSERT INTO cylinders ({', '.join(names)}) "
                f"VALUES ({', '.join('?' * len(names))})",
                [row[n] for n in names],
            )
        return cylinder

    def _row(self, cylinder_id: str) -> dict[str, Any] | None:
        rows = self.store.query("SELECT * FROM cylinders WHERE id = ?", (cylinder_id,))
        return rows[0] if rows else None

    @staticmethod
    def _from_row(row: Mapping[str, Any]) -> Cylinder:
        values = dict(row)
        values["expires_on"] = _date(values["expires_on"], "expires_on")
        values["certificate_date"] = _date(values.get("certificate_date"), "certificate_date")
        return Cylinder(**values)

    def get(self, cylinder_id: str) -> Cylinder:
        row = self._row(cylinder_id)
        if row is None:
            known = ", ".join(c.id for c in self.list()) or "none registered"
            raise ConfigError(
                f"cylinder {cylinder_id!r} is not registered (known: {known}); "
                "add it with `chamberd calibrate cylinders add`"
            )
        return self._from_row(row)

    def list(self, *, include_retired: bool = False) -> list[Cylinder]:
        sql = "SELECT * FROM cylinders"
        if not include_retired:
            sql += " WHERE retired_at IS NULL"
        return [self._from_row(r) for r in self.store.query(sql + " ORDER BY gas, value, id")]

    def retire(
        self, cylinder_id: str, *, by: str, at: dt.datetime, note: str | None = None
    ) -> Cylinder:
        cylinder = self.get(cylinder_id)
        if cylinder.retired_at is not None:
            raise ConfigError(f"cylinder {cylinder_id!r}: already retired on {cylinder.retired_at}")
        if not (by or "").strip():
            raise ConfigError("cylinder retire: who retires it is required")
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE cylinders SET retired_at = ?, retired_by = ?, "
                "note = COALESCE(?, note) WHERE id = ?",
                (iso(at), by.strip(), note, cylinder_id),
            )
        return self.get(cylinder_id)

    def usable(self, cylinder_id: str, *, on: dt.date, gas: str | None = None) -> Cylinder:
        """The cylinder, if it may be used on ``on``; ConfigError saying why not otherwise
        (unknown, retired, expired, or not of ``gas``)."""
        cylinder = self.get(cylinder_id)
        if cylinder.retired_at is not None:
            raise ConfigError(
                f"cylinder {cylinder.id} was retired on {cylinder.retired_at[:10]}: "
                "use another cylinder"
            )
        if cylinder.expired_on(on):
            raise ConfigError(
                f"cylinder {cylinder.id} expired on {cylinder.expires_on.isoformat()}: "
                "refused (its certified value is no longer guaranteed); use a cylinder "
                "in date, or have it re-certified and register it again"
            )
        if gas is not None and cylinder.gas != gas:
            raise ConfigError(f"cylinder {cylinder.id} holds {cylinder.gas}, not {gas}")
        return cylinder
