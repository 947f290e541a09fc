"""Calibration procedures, records and corrections (a later issue)."""
