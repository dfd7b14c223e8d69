"""`selfheal detect`: score a ``timestamp,value`` CSV into ``timestamp,value,anomaly_score``.

The same functions serve the CLI and `bench/nab.py`, so the benchmark measures exactly what users run.
Rows keep their order and their original text; every row gets a score from itself and the rows before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine.detection.scorer import METHODS, score_series
from engine.errors import SelfhealError

REQUIRED_COLUMNS = ("timestamp", "value")


class DetectInputError(SelfhealError):
    """The input of `selfheal detect` is missing or malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class Series:
    """One metric series read from a CSV: the rows' original text plus parsed values and timestamps."""

    path: Path
    frame: pd.DataFrame  # the timestamp and value columns as text, in file order
    values: np.ndarray
    timestamps: np.ndarray


def read_series_csv(path: Path | str) -> Series:
    """Read and validate a ``timestamp,value`` CSV; raise `DetectInputError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise DetectInputError(f"input file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError as e:
        raise DetectInputError(f"input file {path} is empty; expected a header timestamp,value and rows") from e
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DetectInputError(f"input file {path} is not a readable CSV: {e}") from e
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DetectInputError(f"input file {path} lacks column(s) {', '.join(missing)}; "
                               f"expected columns timestamp,value (found: {', '.join(frame.columns)})")
    frame = frame[list(REQUIRED_COLUMNS)].reset_index(drop=True)
    if frame.empty:
        raise DetectInputError(f"input file {path} has a header but no data rows")
    values = pd.to_numeric(frame["value"].str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        raise DetectInputError(f"column value must hold finite numbers; line {i + 2} of {path} has "
                               f"{frame['value'][i]!r} ({len(bad)} bad row(s))")
    stamps = _parse_timestamps(frame["timestamp"])
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DetectInputError(f"column timestamp must hold dates and times; line {i + 2} of {path} has "
                               f"{frame['timestamp'][i]!r} ({len(bad)} bad row(s))")
    return Series(path, frame, values, stamps.to_numpy())


def _parse_timestamps(text: pd.Series) -> pd.Series:
    """Datetimes of a text column (NaT where unparsable); one inferred format first, per-row if that fails."""
    try:
        return pd.to_datetime(text.str.strip())
    except (ValueError, TypeError, OverflowError):
        try:
            return pd.to_datetime(text.str.strip(), errors="coerce", format="mixed")
        except ValueError as e:  # e.g. offsets that differ from row to row
            raise DetectInputError(f"column timestamp: {e}; write every timestamp with the same UTC offset") from e


def score_frame(series: Series, *, method: str = "likelihood", seed: int = 0) -> np.ndarray:
    """Anomaly scores in [0, 1] of a series read by `read_series_csv` (a day's period from its timestamps)."""
    if method not in METHODS:
        raise DetectInputError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return score_series(series.values, series.timestamps, method=method, seed=seed)


def detect_file(input_path: Path | str, output_path: Path | str, *, method: str = "likelihood",
                seed: int = 0) -> int:
    """Score ``input_path`` into ``output_path`` (``timestamp,value,anomaly_score``); return the row count."""
    if method not in METHODS:
        raise DetectInputError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    series = read_series_csv(input_path)
    scores = score_frame(series, method=method, seed=seed)
    out = series.frame.assign(anomaly_score=scores)
    output_path = Path(output_path)
    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(output_path, index=False)
    except OSError as e:
        raise DetectInputError(f"cannot write {output_path}: {e.strerror or e}") from e
    return len(out)
