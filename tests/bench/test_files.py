"""report.md, report.json and bench.png from a report (the measured ones are checked in test_run.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench.reports import point, report
from tritongen.bench import default_report_dir, write_report


def test_report_files_say_what_was_measured(tmp_path: Path) -> None:
    measured = report((point(1, 100.0), point(4, 300.0)), ceiling=600.0)
    files = write_report(measured, tmp_path / "out")
    assert [f.name for f in files] == ["report.md", "report.json", "bench.png"]
    assert (tmp_path / "out" / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "out" / "report.json").read_text())["best_concurrency"] == 4
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "**Best served throughput: 300.0 inferences/s** at concurrency 4" in markdown
    assert "Served throughput is **50 %** of it." in markdown
    assert "| 4 | 300.0 |" in markdown and "{{" not in markdown and "{%" not in markdown
    assert default_report_dir("m").parent == Path("bench_reports") and default_report_dir("m").name.startswith("m-")
