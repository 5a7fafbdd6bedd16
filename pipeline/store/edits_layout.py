"""Where the editing engine's outputs live in a build, and how its tables are read and written.

```
<build>/edits/results.parquet                  one row per case x method x grid candidate x part
<build>/edits/comparison.parquet|.md|.png      mean and 95% interval over cases, per method
<build>/edits/curves.parquet|.png              per method and test part: the summary of the
                                               front of errors corrected against locality
                                               at 99 / 95 %, and the fronts as a figure
<build>/edits/curve_points.parquet             every candidate's point, the budget point
<build>/edits/budget.parquet                   per case and method: the selected candidate's
                                               validation-predicted and held-out clean change
<build>/edits/style_outcomes.parquet           per case, method, candidate and target test
                                               style image: errors corrected (StyleOutcomeRow)
<build>/edits/style_matrix.png                 exemplar styles x held-out styles, per method
                                               (when cases differ in their exemplars' style)
<build>/edits/<method>/<case_id>.safetensors   the selected edit's weight delta
<build>/edits/<method>/<case_id>.solves/<j>.safetensors   every distinct unscaled edit of the
                                               grid (evaluated as the curve)
<build>/edits/cache/                           cached key statistics C per model and layer
<build>/report/edits.html                      the comparison as a page of its own
```

These tables are the engine's own outputs, not build manifests. The results table has a
declared record (:class:`pipeline.store.edit_results.EditResultRow`), and so has the per-style
breakdown (:class:`pipeline.store.style_outcomes.StyleOutcomeRow`); the comparison tables are
derived from them and read with pandas as written.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipeline.store.manifest import write_table

EDITS_DIR = "edits"
RESULTS_FILE = "results.parquet"
COMPARISON_FILE = "comparison.parquet"
COMPARISON_MD = "comparison.md"
COMPARISON_PNG = "comparison.png"
CURVES_FILE = "curves.parquet"
CURVE_POINTS_FILE = "curve_points.parquet"
MARGINS_FILE = "front_margins.parquet"  # least margin of each front over each other
CURVES_PNG = "curves.png"
BUDGET_FILE = "budget.parquet"
STYLE_OUTCOMES_FILE = "style_outcomes.parquet"
STYLE_MATRIX_PNG = "style_matrix.png"
CACHE_DIR = "cache"
EDITS_PAGE = "report/edits.html"


def edits_dir(build_dir: str | Path) -> Path:
    return Path(build_dir) / EDITS_DIR


def delta_path(build_dir: str | Path, method: str, case_id: str) -> Path:
    return edits_dir(build_dir) / method / f"{case_id}.safetensors"


def solve_path(build_dir: str | Path, method: str, case_id: str, index: int) -> Path:
    """One distinct unscaled edit of a method's grid on a case (``Trial.solve`` = ``index``)."""
    return edits_dir(build_dir) / method / f"{case_id}.solves" / f"{index}.safetensors"


def clear_results(build_dir: str | Path) -> int:
    """Delete a build's edit results, deltas and comparisons (a fresh experiment), keeping the
    cached key statistics; returns how many entries were removed."""
    import shutil

    folder = edits_dir(build_dir)
    removed = 0
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.name == CACHE_DIR:
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        removed += 1
    return removed


def read_frame(path: Path) -> pd.DataFrame:
    """A results or comparison table; empty when it has not been written yet."""
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write a table atomically (without the pandas index)."""
    return write_table(
        path, pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    )
