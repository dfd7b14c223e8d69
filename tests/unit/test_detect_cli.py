"""`selfheal detect --input IN.csv --output OUT.csv`: the file contract and one-line errors with exit status 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.detection.detect import read_series_csv, score_frame

runner = CliRunner()


def write_series(path: Path, n: int = 400, spike_at: int | None = 380) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    values = np.round(5 + rng.normal(0, 0.5, n), 3)
    if spike_at is not None:
        values[spike_at] = 60.0
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-03-01", periods=n, freq="5min").strftime(
        "%Y-%m-%d %H:%M:%S"), "value": values})
    frame.to_csv(path, index=False)
    return frame


def detect(*args: str):
    return runner.invoke(app, ["detect", *args])


def test_writes_one_score_per_row_in_order(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    frame = write_series(source)
    target = tmp_path / "out" / "scores.csv"
    result = detect("--input", str(source), "--output", str(target))
    assert result.exit_code == 0, result.output
    out = pd.read_csv(target, dtype={"timestamp": str})
    assert list(out.columns) == ["timestamp", "value", "anomaly_score"]
    assert out["timestamp"].tolist() == frame["timestamp"].tolist()
    np.testing.assert_array_equal(out["value"].to_numpy(), frame["value"].to_numpy())
    assert out["anomaly_score"].between(0, 1).all()
    assert out["anomaly_score"].iloc[380] == 1.0  # the spike
    # The CLI and the benchmark share one code path.
    np.testing.assert_array_equal(out["anomaly_score"].to_numpy(), score_frame(read_series_csv(source)))


def test_iforest_method_and_seed(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    write_series(source, n=700)
    outputs = []
    for name in ("a.csv", "b.csv"):
        result = detect("-i", str(source), "-o", str(tmp_path / name), "--method", "iforest", "--seed", "4")
        assert result.exit_code == 0, result.output
        outputs.append(pd.read_csv(tmp_path / name)["anomaly_score"].to_numpy())
    np.testing.assert_array_equal(*outputs)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "input file not found"),
        ("", "is empty"),
        ("timestamp,value\n", "no data rows"),
        ("time,value\n2024-01-01 00:00:00,1\n", "lacks column(s) timestamp"),
        ("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,abc\n", "line 3"),
        ("timestamp,value\n2024-01-01 00:00:00,\n", "finite numbers"),
        ("timestamp,value\nnot a time,1\n", "column timestamp"),
    ],
    ids=["missing-file", "empty-file", "header-only", "missing-column", "non-numeric", "blank-value", "bad-time"],
)
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path: Path, content: str | None, message: str) -> None:
    source = tmp_path / "in.csv"
    if content is not None:
        source.write_text(content, encoding="utf-8")
    result = detect("--input", str(source), "--output", str(tmp_path / "out.csv"))
    assert result.exit_code == 2
    text = result.output.strip()
    assert text.startswith("error:") and "\n" not in text and message in text
    assert "Traceback" not in text
    assert not (tmp_path / "out.csv").exists()


def test_unknown_method_is_rejected(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    write_series(source, n=20, spike_at=None)
    result = detect("-i", str(source), "-o", str(tmp_path / "out.csv"), "--method", "magic")
    assert result.exit_code == 2
    assert "unknown method 'magic'" in result.output
