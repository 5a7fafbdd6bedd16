"""The build report (`BUILD/report/build.html`): what the build made, shown side by side.

For every (concept, texture) it shows one example as original | mask | counterfactual with the
classifier's clean and counterfactual predictions, plus counts per concept and texture. It needs
no model (everything is read from the manifests), so the build flow writes it at the end.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.classify.imagenet import class_names
from pipeline.imageio import encode_png
from pipeline.segment.stats import concept_stats
from pipeline.store import BuildStore
from pipeline.store.atomic import atomic_write_bytes, atomic_write_text
from pipeline.stylize.preview import side_by_side

REPORT_DIR = "report"


def _name(index: object) -> str:
    names = class_names()
    if index is None or (isinstance(index, float) and np.isnan(index)):
        return "-"
    value = int(index)  # type: ignore[call-overload]
    return names[value] if 0 <= value < len(names) else str(value)


def examples(manifest: pd.DataFrame) -> pd.DataFrame:
    """One counterfactual per (concept, texture): the first kept one by id, else the first."""
    if manifest.empty:
        return manifest
    ordered = manifest.sort_values(["kept", "cf_id"], ascending=[False, True], kind="stable")
    return ordered.drop_duplicates(["concept", "texture"]).sort_values(["concept", "texture"])


def build_concept_stats(build_dir: str | Path) -> list[dict[str, Any]]:
    """`concept_stats` of a build's masks manifest (what `conceptswap concepts BUILD` prints)."""
    if Path(build_dir).is_dir():
        store = BuildStore(build_dir)
        if store.has_manifest("masks"):
            return concept_stats(store.read("masks"))
    raise FileNotFoundError(
        f"no masks manifest in {build_dir} (has the build run its segment stage?)"
    )


def write_build_overview(build_dir: str | Path) -> Path:
    """Write `BUILD/report/build.html` and its example panels; return the page's path."""
    store = BuildStore(build_dir)
    if not store.has_manifest("counterfactuals"):
        absent = store.manifest_path("counterfactuals")
        raise FileNotFoundError(f"{store.root} has no counterfactual manifest {absent}; build it")
    manifest = store.frame("counterfactuals")
    images = store.frame("images", ["image_id", "path"]).set_index("image_id")
    masks = store.frame("masks", ["mask_id", "path"]).set_index("mask_id")
    out = store.root / REPORT_DIR
    panels = []
    for row in examples(manifest).itertuples():
        panel = side_by_side(
            store.load_image(images.loc[row.image_id, "path"]),
            store.load_mask(masks.loc[row.mask_id, "path"]),
            store.load_image(row.path),
            captions=[
                f"clean: {_name(row.clean_pred)}",
                f"{row.concept} mask",
                f"{row.style_image}: {_name(row.cf_pred)}",
            ],
        )
        relpath = f"build/{row.cf_id}.png"
        atomic_write_bytes(out / relpath, encode_png(panel), skip_if_same=True)
        panels.append((row, relpath))
    counts = (
        manifest.groupby(["concept", "texture"])["kept"].agg(["size", "sum"]).reset_index()
        if not manifest.empty
        else pd.DataFrame(columns=["concept", "texture", "size", "sum"])
    )
    rows_html = "".join(
        f"<tr><td>{html.escape(str(r.concept))}</td><td>{html.escape(str(r.texture))}</td>"
        f"<td>{int(r.size)}</td><td>{int(r.sum)}</td></tr>"
        for r in counts.itertuples()
    )
    figures = "".join(
        f"<figure><img src='{relpath}' alt='{html.escape(row.cf_id)}'>"
        f"<figcaption>{html.escape(str(row.concept))} × {html.escape(str(row.texture))}"
        f" — kept: {bool(row.kept)}</figcaption></figure>"
        for row, relpath in panels
    )
    kept = int(manifest["kept"].sum()) if len(manifest) else 0
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>build {html.escape(store.root.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
figure{{margin:1em 0}}img{{max-width:100%;border:1px solid #ddd}}</style></head>
<body><h1>Build {html.escape(store.root.name)}</h1>
<p>{len(images)} images, {len(manifest)} counterfactuals, {kept} kept,
{len(store.quarantined())} quarantined inputs.</p>
<h2>Counterfactuals per concept and texture</h2>
<table><tr><th>concept</th><th>texture</th><th>counterfactuals</th><th>kept</th></tr>
{rows_html}</table>
<h2>Examples: original | mask | counterfactual</h2>{figures}
</body></html>
"""
    target = out / "build.html"
    atomic_write_text(target, page, skip_if_same=True)
    return target
