"""benchmarks/latency_study.py turns evaluate JSONs into rows, a table and a plot (the
evaluate runs themselves are the study; here cells that exist are read, not re-run)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def load_study():
    spec = importlib.util.spec_from_file_location("latency_study",
                                                  ROOT / "benchmarks" / "latency_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_cell(path: Path, successes: int, n: int = 10) -> None:
    path.write_text(json.dumps({
        "episodes": n, "successes": successes, "policy": {"checkpoint_id": "abc"},
        "executor": {"commands_published": "1000", "hold_ticks": "50"},
        "smoothness": {"max_step": 0.06, "mean_jerk": 500.0},
        "latency_ms": {"p50": 30.0}, "commit": "deadbee",
    }))  # fmt: skip


def test_rows_table_and_plot_from_existing_cells(tmp_path):
    study = load_study()
    cells = tmp_path / "latency"
    cells.mkdir()
    fake_cell(cells / "eval_p_temporal_ensembling_d0.json", 9)
    fake_cell(cells / "eval_p_rtc_identity_d0.json", 10)
    fake_cell(cells / "eval_p_rtc_identity_d4.json", 7)
    rows = [study.run_cell("p", "unused", s, d, "1000:1010", cells)
            for s, d in (("temporal_ensembling", 0), ("rtc:identity", 0), ("rtc:identity", 4))]
    assert [r["successes"] for r in rows] == [9, 10, 7]
    assert rows[0]["hold_fraction"] == 0.05 and rows[1]["strategy"] == "rtc:identity"
    lo, hi = rows[2]["wilson95"]
    assert lo < 0.7 < hi
    text = study.table(rows)
    assert "| p | rtc:identity | 4 | 7/10 |" in text
    study.plot(rows, tmp_path / "study.png")
    assert (tmp_path / "study.png").stat().st_size > 1000


def test_a_bad_policy_argument_is_refused(tmp_path, capsys):
    study = load_study()
    with pytest.raises(SystemExit):
        study.main(["--policy", "nodir", "--out", str(tmp_path)])
    assert "NAME=CHECKPOINT_DIR" in capsys.readouterr().err
