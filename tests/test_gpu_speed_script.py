"""tests/benchmarks/gpu_speed.py is run by hand on a lent GPU, rarely; its dry run (CPU, tiny models) keeps it from
breaking unnoticed between those runs."""

from __future__ import annotations

import re

import pytest

from tests.benchmarks import gpu_speed


def test_dry_run_prints_a_figure_line_per_section(capsys) -> None:
    sections = ["sd15", "diffusers", "medvram", "lowvram", "vae_tiling"]
    assert gpu_speed.main(["--dry-run", "--only", ",".join(sections)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("device: CPU (dry run)")
    for section in sections[:-1]:
        assert re.search(rf"^{section} +it/s \d+\.\d+, job s \d+\.\d+", out, re.MULTILINE), out
    assert re.search(r"^vae_tiling +whole s \d+\.\d+, tiled s \d+\.\d+", out, re.MULTILINE), out
    assert "FAILED" not in out


def test_unknown_sections_are_refused(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        gpu_speed.main(["--dry-run", "--only", "sd15,warp"])
    assert exit_.value.code == 2
    assert "unknown sections ['warp']" in capsys.readouterr().err
