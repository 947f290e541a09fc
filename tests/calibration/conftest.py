"""Fixtures for the calibration tests (helpers in tests/calsite.py)."""

from __future__ import annotations

import pytest
from calsite import SimSite


@pytest.fixture
def make_sim_site(tmp_path):
    sites: list[SimSite] = []

    def make(**kwargs) -> SimSite:
        site = SimSite(tmp_path, **kwargs)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.stop()
