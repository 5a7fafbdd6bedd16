"""The edit results row is declared once: the record gives the Parquet schema, reads back typed."""

from __future__ import annotations

import dataclasses
import math

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.store.edit_results import EditResultRow, read_results, read_rows, write_results


def _row(**changes) -> EditResultRow:
    values = {
        "case_id": "background-snow-1-abc",
        "concept": "background",
        "texture": "snow",
        "target": "class1",
        "target_class": 1,
        "n_train": 3,
        "plan": "errors",
        "label_free": False,
        "method": "rewrite-closed",
        "model_id": "timm:x@abc",
        "layer": "blocks.6.0.conv_pwl",
        "run_key": "k1",
        "settings": '{"cov_floor": 1e-06}',
        "covariance_set": "build-abc",
        "covariance_overlap": 0,
        "candidate_index": 2,
        "candidate": '{"rank": 1, "scale": 0.5}',
        "selected": True,
        "val_drop_pp": 0.5,
        "val_ec": 50.0,
        "train_acc": 100.0,
        "strength": 1.25,
        "budget_pp": 1.0,
        "n_validation": 40,
        "n_validation_cf": 12,
        "pp_per_image": 2.5,
        "budget_resolved": False,
        "within_budget": None,
        "grid_defect": False,
        "edit_s": 0.1,
        "select_s": 1.0,
        "eval_s": 0.2,
        "reused_delta": False,
        "group": "target_train_style",
        "n": 4,
        "n_clean_correct": 4,
        "e_pre": 2,
        "e_post": 1,
        "errors_corrected": 50.0,
        "new_errors": 0,
        "acc_pre": 50.0,
        "acc_post": 75.0,
        "gr": 50.0,
        "gr_n": 2,
        "changed": 25.0,
        "measurable": False,
        "dlogp": math.nan,
        "err_bits": "10 11 00 00",
        "same_bits": "",
        "sr": 100.0,
        "sr_n": 1,
        "lr": 97.5,
        "lr_n": 40,
        "clean_acc_pre": 90.0,
        "clean_acc_post": 87.5,
        "clean_drop_pp": 2.5,
        "general_set": "imagenet-samples-800img-abc",
        "general_n": 800,
        "general_unchanged": 0.99,
        "general_acc_pre": 0.75,
        "general_acc_post": 0.74,
        "general_drop_pp": 1.0,
    }
    return EditResultRow(**{**values, **changes})


def test_schema_comes_from_the_declaration():
    schema = EditResultRow.arrow_schema()
    assert schema.names == [f.name for f in dataclasses.fields(EditResultRow)]
    assert schema.field("selected").type == pa.bool_()
    assert schema.field("within_budget").nullable  # None: the budget is unresolved
    assert not schema.field("budget_resolved").nullable
    assert schema.field("candidate_index").type == pa.int64()
    assert schema.field("errors_corrected").type == pa.float64()


def test_parquet_round_trip_keeps_types_and_values(tmp_path):
    rows = [
        _row(),
        _row(candidate_index=0, selected=False, within_budget=True, n_validation=250, dlogp=-0.5),
    ]
    path = write_results(rows, tmp_path / "results.parquet")
    assert pq.read_schema(path).names == EditResultRow.arrow_schema().names
    back = read_rows(path)
    assert back[0].within_budget is None and back[1].within_budget is True
    assert back[1] == rows[1]
    assert back[0].case_id == rows[0].case_id and math.isnan(back[0].dlogp)
    frame = read_results(path)
    assert str(frame["selected"].dtype) == "bool" and frame["e_pre"].dtype.kind == "i"


def test_absent_or_older_tables_read_as_empty(tmp_path):
    assert read_results(tmp_path / "none.parquet").empty
    assert list(read_results(tmp_path / "none.parquet").columns) == (
        EditResultRow.arrow_schema().names
    )
    old = tmp_path / "old.parquet"
    pq.write_table(pa.table({"case_id": ["a"], "method": ["rewrite"]}), old)
    assert read_results(old).empty
