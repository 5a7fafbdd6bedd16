"""Build storage: atomic writes, content-addressed paths, manifests, quarantine."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from pipeline.records import ConceptMask, QuarantineEntry
from pipeline.store import BuildStore
from pipeline.store.atomic import atomic_write_bytes
from pipeline.store.manifest import table_digest


def mask_record(mask_id: str, concept: str = "background") -> ConceptMask:
    return ConceptMask(
        mask_id, "ab" * 32, concept, 0.5, 0.25, "cam:x", f"masks/{mask_id[:2]}/{mask_id}.png"
    )


def test_atomic_write_leaves_no_temp_files(tmp_path) -> None:
    target = tmp_path / "a" / "b.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["b.bin"]


def test_sweep_removes_crash_leftovers(tmp_path) -> None:
    store = BuildStore(tmp_path)
    (tmp_path / "images" / "ab").mkdir(parents=True)
    (tmp_path / "images" / "ab" / ".tmp-123").write_bytes(b"partial")
    assert store.sweep() == 1
    assert not list((tmp_path / "images").rglob(".tmp-*"))


def test_paths_are_content_addressed_and_cannot_escape(tmp_path) -> None:
    store = BuildStore(tmp_path)
    assert store.relpath("masks", "abcdef") == "masks/ab/abcdef.png"
    with pytest.raises(ValueError, match="hex"):
        store.relpath("masks", "../../etc")
    with pytest.raises(ValueError, match="escapes"):
        store.path("../outside.png")


def test_png_files_round_trip(tmp_path) -> None:
    store = BuildStore(tmp_path)
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:3, 2:6] = True
    rel = store.save_png(store.relpath("masks", "ff00"), mask)
    assert np.array_equal(store.load_mask(rel), mask)


def test_parts_consolidate_sorted_and_deduplicated(tmp_path) -> None:
    store = BuildStore(tmp_path)
    store.write_part("masks", "k1", [mask_record("cc"), mask_record("aa")])
    store.write_part("masks", "k2", [mask_record("bb"), mask_record("aa")])
    path = store.consolidate("masks", ["k2", "k1"])
    import pyarrow.parquet as pq

    assert pq.read_table(path).column("mask_id").to_pylist() == ["aa", "bb", "cc"]
    digest = table_digest(path)
    store.consolidate("masks", ["k1", "k2"])
    assert table_digest(path) == digest
    assert store.read_part("masks", "k1")[0] == mask_record("cc")


def test_quarantine_has_one_entry_per_input_and_stage(tmp_path) -> None:
    store = BuildStore(tmp_path)
    store.quarantine([QuarantineEntry("x.jpg", "ingest", "truncated image data")])
    store.quarantine([QuarantineEntry("x.jpg", "ingest", "truncated image data")])
    store.quarantine([QuarantineEntry("y.jpg", "ingest", "not an image file")])
    entries = store.quarantined()
    assert [(e.uri, e.reason) for e in entries] == [
        ("x.jpg", "truncated image data"),
        ("y.jpg", "not an image file"),
    ]


def test_paths_from_manifests_cannot_escape_the_build(tmp_path) -> None:
    store = BuildStore(tmp_path / "build")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not yours")
    for relpath in ("../secret.png", "images/../../secret.png", str(outside)):
        with pytest.raises(ValueError, match="escapes the build directory"):
            store.load_image(relpath)
    (tmp_path / "build").mkdir(exist_ok=True)
    (tmp_path / "build" / "images").symlink_to(tmp_path)  # a link out of the build
    with pytest.raises(ValueError, match="escapes the build directory"):
        store.path("images/secret.png")
    with pytest.raises(ValueError, match="lowercase hex"):
        store.relpath("images", "../../etc")


def test_png_writer_finishes_every_file_before_the_block_ends(tmp_path) -> None:
    from pipeline.store.build_store import PngWriter

    store = BuildStore(tmp_path)
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(9)]
    paths = [store.relpath("stylized", f"{index:02x}" * 8) for index in range(9)]
    with store.png_writer(threads=2, max_pending=2) as writer:
        assert isinstance(writer, PngWriter)
        for path, array in zip(paths, arrays, strict=True):
            writer.save(path, array)
    for path, array in zip(paths, arrays, strict=True):
        assert np.array_equal(store.load_image(path), array)
    assert not list(tmp_path.rglob(".tmp-*"))

    (tmp_path / "masks").write_text("a file where a folder must go")
    with pytest.raises(OSError), store.png_writer() as writer:
        writer.save(store.relpath("masks", "ab" * 8), arrays[0])
    with pytest.raises(ValueError, match="escapes"), store.png_writer() as writer:
        writer.save("../outside.png", arrays[0])


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_are_as_readable_as_the_umask_allows(tmp_path, umask, mode) -> None:
    """Given a umask, when a file is written atomically (new, then replaced), then its mode is
    0666 minus the umask, as for `open()`: 0644 under 022 (teammates and web servers can read a
    build), 0600 under 077; folders made on the way follow the umask too."""
    previous = os.umask(umask)
    try:
        target = tmp_path / "deep" / "file.bin"
        atomic_write_bytes(target, b"one")
        assert stat.S_IMODE(target.stat().st_mode) == mode
        atomic_write_bytes(target, b"two")
        assert stat.S_IMODE(target.stat().st_mode) == mode
        assert stat.S_IMODE(target.parent.stat().st_mode) == 0o777 & ~umask
        store = BuildStore(tmp_path / "build")
        store.write_part("masks", "k", [mask_record("cd" * 16)])
        part = store.part_path("masks", "k")
        assert stat.S_IMODE(part.stat().st_mode) == mode
    finally:
        os.umask(previous)
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]
