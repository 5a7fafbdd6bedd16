"""Build stages as plain functions over one shard of records (no Prefect here).

Each stage derives a cache key for its shard from its inputs' ids, its config, its backend's
fingerprint (weights hash included) and its code version. A finished shard is a manifest part
named by that key: re-running finds it and skips the shard without loading a model; a part whose
files were deleted re-creates only those files.
"""
