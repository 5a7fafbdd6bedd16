"""Export a build as a Hugging Face dataset and publish it to the Hub.

```
<out>/README.md                                            dataset card (YAML metadata + text)
<out>/data/counterfactuals/train-00000-of-00001.parquet    one row per counterfactual
<out>/data/cases/train-00000-of-00001.parquet              one row per edit case (if any)
```

Configs (one per record kind):

- `counterfactuals` (default): `image` (the original at the build's working resolution), `mask`
  and `counterfactual` as `Image()` columns (PNG bytes exactly as stored in the build); `label`,
  `clean_pred` and `cf_pred` as ImageNet-1k `ClassLabel`s where **-1 means "no label"** (an
  unlabelled source image, or no prediction); `concept`, `texture`, `style_image`, `kept`; nested
  metadata: `mask_info` {mask_id, segmenter_id, score, area_frac}, `style` {style_id, sha256,
  license}, `clean_topk` / `cf_topk` as lists of {class, prob} (`class` indexes the same ImageNet
  names as `label`), `verdicts` as a struct of {ok, reason} per filter.
- `cases` (when `BUILD/cases/*.json` exist): one row per edit case; counterfactual ids refer to
  `cf_id` in `counterfactuals`, image ids to `image_id`; `params` is a JSON string.

The modules, one job each: `schema` (the `Features`, derived from the record declarations),
`rows` (build records -> export rows), `shards` (the streamed Parquet writer and its size
planning), `card` (the dataset card), `licenses`, `export` (`export_build`) and `hub`
(`publish`: upload what changed).
"""

from pipeline.publish.card import render_card
from pipeline.publish.export import ExportResult, export_build, read_export_bytes
from pipeline.publish.hub import PublishError, PublishResult, default_folder, file_digest, publish
from pipeline.publish.licenses import UnknownLicenseError, hub_license, image_license
from pipeline.publish.schema import NO_LABEL, case_features, counterfactual_features
from pipeline.publish.shards import DEFAULT_MAX_SHARD_SIZE, ConfigExport, parse_size, plan_shards

__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "NO_LABEL",
    "ConfigExport",
    "ExportResult",
    "PublishError",
    "PublishResult",
    "UnknownLicenseError",
    "case_features",
    "counterfactual_features",
    "default_folder",
    "export_build",
    "file_digest",
    "hub_license",
    "image_license",
    "parse_size",
    "plan_shards",
    "publish",
    "read_export_bytes",
    "render_card",
]
