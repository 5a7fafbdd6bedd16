"""Export a build as a dataset (Hugging Face, plain Parquet, WebDataset) and publish it to the Hub.

`publish` uploads the `hub` export:

```
<out>/README.md                                            dataset card (YAML metadata + text)
<out>/data/counterfactuals/train-00000-of-00001.parquet    one row per counterfactual
<out>/data/images/train-00000-of-00001.parquet             one row per source image
<out>/data/cases/train-00000-of-00001.parquet              one row per edit case (if any)
```

`export_build(..., format=...)` also writes `hf` (`load_from_disk` and `load_dataset` both read
it), `parquet` (one plain file per config) and `webdataset` (tar shards); see `docs/export.md`.

Configs (one per record kind):

- `counterfactuals` (default): `mask` and `counterfactual` as `Image()` columns (PNG bytes
  exactly as stored in the build), `image_id` joining the `images` config (or the source image
  inline as `image`, with `inline_images`); `label`, `clean_pred` and `cf_pred` as ImageNet-1k
  `ClassLabel`s with one more name, `unlabelled` = `UNLABELLED` (1000: an unlabelled source
  image, or no prediction), so `int2str` works on every row; `concept`, `texture`,
  `style_image`, `kept`; nested metadata: `mask_info` {mask_id, segmenter_id, score,
  area_frac}, `style` {style_id, sha256, license}, `clean_topk` / `cf_topk` as lists of
  {class, prob}, `verdicts` as a struct of {ok, reason} per filter.
- `images`: each source image once (`image_id`, `image`, `label`, `uri`, size, license).
- `cases` (when `BUILD/cases/*.json` exist): one row per edit case; counterfactual ids refer to
  `cf_id` in `counterfactuals`, image ids to `image_id`; `params` is a JSON string.

The modules, one job each: `schema` (the `Features`, derived from the record declarations),
`rows` (build records -> export rows), `shards` (the streamed Parquet / Arrow writer and its size
planning), `webdataset` (tar shards), `card` (the dataset card), `licenses`, `export`
(`export_build`), `hub` (`publish`: upload what changed) and `torch_dataset` (a torch
`Dataset` over a build).
"""

from pipeline.publish.card import render_card
from pipeline.publish.export import FORMATS, ExportResult, export_build, read_export_bytes
from pipeline.publish.hub import PublishError, PublishResult, default_folder, file_digest, publish
from pipeline.publish.licenses import UnknownLicenseError, hub_license, image_license
from pipeline.publish.schema import (
    UNLABELLED,
    UNLABELLED_NAME,
    case_features,
    counterfactual_features,
    image_features,
    label_names,
)
from pipeline.publish.shards import DEFAULT_MAX_SHARD_SIZE, ConfigExport, parse_size, plan_shards

__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "FORMATS",
    "UNLABELLED",
    "UNLABELLED_NAME",
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
    "image_features",
    "image_license",
    "label_names",
    "parse_size",
    "plan_shards",
    "publish",
    "read_export_bytes",
    "render_card",
]
