"""Ingest: decode each input, name it by its pixels, store it at the working resolution."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.config import BuildConfig
from pipeline.failpoints import failpoint
from pipeline.hashing import pixels_id, stable_key
from pipeline.imageio import ImageDecodeError, decode_image, resize_max_side
from pipeline.records import QuarantineEntry, SourceImage
from pipeline.sources import Source, SourceRef
from pipeline.stages.backends import Backends
from pipeline.store import BuildStore

CODE_VERSION = "ingest-v1"


def ingest_key(source: Source, refs: Sequence[SourceRef], config: BuildConfig) -> str:
    versions = [(ref.uri, ref.label, ref.meta.get("version")) for ref in refs]
    return stable_key(CODE_VERSION, source.id, versions, config.image.model_dump())


def ingest_shard(
    store: BuildStore, refs: Sequence[SourceRef], backends: Backends, config: BuildConfig
) -> tuple[str, list[SourceImage]]:
    """Decode a shard; bad inputs go to quarantine and the rest go on. Returns (key, images)."""
    source = backends.source
    image_config = config.image
    key = ingest_key(source, refs, config)
    if store.has_part("images", key):
        done = [r for r in store.read_part("images", key) if isinstance(r, SourceImage)]
        if all(store.exists(image.path) for image in done):
            return key, done
    images: list[SourceImage] = []
    quarantined: list[QuarantineEntry] = []
    seen: set[str] = set()
    with store.png_writer() as writer:  # encoding overlaps the next decode
        for ref in refs:
            try:
                decoded = decode_image(
                    source.read(ref), ref.uri, max_pixels=image_config.max_pixels
                )
            except ImageDecodeError as error:
                entry = QuarantineEntry(uri=ref.uri, stage="ingest", reason=error.reason)
                quarantined.append(entry)
                continue
            image_id = pixels_id(decoded.rgb)
            if image_id in seen:
                continue  # the same pixels twice in one shard: one record
            seen.add(image_id)
            relpath = store.relpath("images", image_id)
            working = resize_max_side(decoded.rgb, image_config.max_side)
            if not store.exists(relpath):
                writer.save(relpath, working)
            images.append(
                SourceImage(
                    image_id=image_id,
                    uri=ref.uri,
                    width=int(working.shape[1]),
                    height=int(working.shape[0]),
                    label=ref.label,
                    label_name=ref.label_name,
                    path=relpath,
                    source_meta={
                        **{k: v for k, v in ref.meta.items() if k != "version"},
                        **decoded.meta,
                    },
                )
            )
    store.quarantine(quarantined)
    failpoint("ingest.before_part")
    store.write_part("images", key, images)
    return key, images
