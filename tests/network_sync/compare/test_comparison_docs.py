"""The worked example of docs/analyst.md (the compare section) runs as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from comparedata import two_systems

from chamberd.network_sync.central import Central

ROOT = Path(__file__).resolve().parents[3]


def example() -> str:
    text = (ROOT / "docs" / "analyst.md").read_text(encoding="utf-8")
    section = text.split("## Comparing two systems: `chamberd compare`", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_the_analyst_guide_example_runs(tmp_path, monkeypatch):
    with Central.connect(f"sqlite:///{tmp_path / 'campaign.db'}") as db:
        db.migrate()
        two_systems(db, days=10, seed=2)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example(), "docs/analyst.md", "exec"), {})
    printed = out.getvalue()
    assert "pairing: nearest within 15 min, one to one: 30 pairs" in printed
    assert "relative bias -0.1" in printed and "XLG/auto: 3 collar pair(s)" in printed
