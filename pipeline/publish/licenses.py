"""Licenses of an export: every row derives from a source image and a texture, both count.

Sources without a license (folder and Hugging Face sources usually have none in their
`source_meta`) are refused unless the caller opts in, since the export would redistribute them.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.records import SourceImage

UNKNOWN_LICENSES = {"", "unknown", "none", "null", "n/a"}
# SPDX-ish licence names of sources -> Hugging Face license ids (lower case)
HUB_LICENSES = {
    "cc0-1.0": "cc0-1.0",
    "cc-by-4.0": "cc-by-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0",
    "cc-by-3.0": "cc-by-3.0",
    "cc-by-2.0": "cc-by-2.0",
    "apache-2.0": "apache-2.0",
    "mit": "mit",
    "odc-by": "odc-by",
    "pddl": "pddl",
}


class UnknownLicenseError(ValueError):
    """Some exported source images have no license; publishing them needs an explicit opt-in."""


def image_license(image: SourceImage) -> str | None:
    """The `license` of a source image's `source_meta`, or None when it has none."""
    meta = image.source_meta
    value = meta.get("license") if isinstance(meta, dict) else None
    text = str(value).strip() if value is not None else ""
    return None if text.lower() in UNKNOWN_LICENSES else text


def style_license(license_name: str | None) -> str | None:
    """The license of a style image as its texture manifest names it, or None when unknown."""
    return None if str(license_name or "").lower() in UNKNOWN_LICENSES else str(license_name)


def hub_license(licenses: Iterable[str | None]) -> str:
    """A Hugging Face `license:` id for a set of source licenses (`other` when mixed)."""
    found = set(licenses)
    if not found or found == {None}:
        return "unknown"
    if len(found) > 1:
        return "other"
    (only,) = found
    assert only is not None
    return HUB_LICENSES.get(only.lower(), "other")
