"""Publish a build to the Hugging Face Hub as a dataset repository.

`publish` exports the build (`pipeline.publish.export.export_build`) to
`BUILD/publish/<repo-name>/` (or `out_dir`), then uploads only what differs from the repo:

1. `create_repo(repo_id, repo_type="dataset", exist_ok=True)` (`private` applies to a new repo);
2. list the remote tree; a local file is unchanged when the remote file has the same content
   (LFS files: the same sha256; regular files: the same git blob id);
3. one `create_commit` with the new and changed files, and deletions of remote `data/` files the
   export no longer has (an old shard layout); no commit at all when nothing changed.

The export is deterministic, so re-publishing an unchanged build uploads nothing
(`PublishResult.files_uploaded == 0`). `dry_run=True` writes the export folder, contacts nothing
and needs no token.

The token comes from the argument or from `huggingface_hub.get_token()` (`HF_TOKEN`, then the
token file written by `hf auth login`). It is passed to `HfApi` and to nothing else: it is
never printed, logged, written to a file or put in an error message.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import progress
from pipeline.publish.export import ExportResult, export_build
from pipeline.publish.shards import DEFAULT_MAX_SHARD_SIZE

logger = logging.getLogger(__name__)
PUBLISH_DIR = "publish"
MANAGED_PREFIXES = ("data/",)  # remote paths the export owns (stale files there are deleted)


class PublishError(RuntimeError):
    """Publishing cannot start (no token, a bad repo id); the message says what to do."""


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    folder: Path  # the exported folder (what is, or would be, uploaded)
    dry_run: bool
    files: tuple[str, ...]  # every file of the export, relative to `folder`
    uploaded: tuple[str, ...] = ()  # files sent in the commit (new or changed)
    unchanged: tuple[str, ...] = ()  # files already on the Hub with the same content
    deleted: tuple[str, ...] = ()  # stale remote files removed by the commit
    license: str = "unknown"
    rows: dict[str, int] = field(default_factory=dict)  # rows per config
    commit_url: str | None = None
    repo_url: str | None = None

    @property
    def files_uploaded(self) -> int:
        return len(self.uploaded)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (for flow results and the CLI)."""
        return {
            "repo_id": self.repo_id,
            "folder": str(self.folder),
            "dry_run": self.dry_run,
            "files": list(self.files),
            "uploaded": list(self.uploaded),
            "unchanged": list(self.unchanged),
            "deleted": list(self.deleted),
            "files_uploaded": self.files_uploaded,
            "license": self.license,
            "rows": dict(self.rows),
            "commit_url": self.commit_url,
            "repo_url": self.repo_url,
        }


@dataclass(frozen=True)
class FileDigest:
    path: str
    size: int
    sha256: str
    git_oid: str  # git blob sha1 (what the Hub reports for a regular file)


def file_digest(root: Path, relpath: str, chunk: int = 1 << 20) -> FileDigest:
    """sha256 and git blob id of a file, read in chunks (shards can be hundreds of MB)."""
    path = root / relpath
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    git = hashlib.sha1(f"blob {size}\0".encode())
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            sha256.update(block)
            git.update(block)
    return FileDigest(relpath, size, sha256.hexdigest(), git.hexdigest())


def is_unchanged(local: FileDigest, remote: Any) -> bool:
    """Whether a remote `RepoFile` has the content of `local` (LFS sha256 or git blob id)."""
    if remote is None or getattr(remote, "size", None) != local.size:
        return False
    lfs = getattr(remote, "lfs", None)
    if lfs is not None:
        return getattr(lfs, "sha256", None) == local.sha256
    return getattr(remote, "blob_id", None) == local.git_oid


def default_folder(build_dir: str | Path, repo_id: str) -> Path:
    """Where `publish` writes the export of `build_dir` for `repo_id`: `BUILD/publish/<name>/`."""
    return Path(build_dir).resolve() / PUBLISH_DIR / repo_id.split("/")[-1]


def _validate_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PublishError(f"invalid repo id {repo_id!r}: {error}") from None
    if repo_id.count("/") != 1:
        raise PublishError(f"repo id must be 'namespace/name', got {repo_id!r}")


def _remote_files(api: Any, repo_id: str, revision: str | None) -> dict[str, Any]:
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    try:
        entries = api.list_repo_tree(
            repo_id, repo_type="dataset", recursive=True, revision=revision
        )
        return {e.path: e for e in entries if hasattr(e, "blob_id")}
    except (EntryNotFoundError, RevisionNotFoundError):  # a repo without commits
        return {}


def publish(
    build_dir: str | Path,
    repo_id: str,
    private: bool = False,
    dry_run: bool = False,
    allow_unknown_license: bool = False,
    token: str | None = None,
    *,
    out_dir: str | Path | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    inline_images: bool = False,
    commit_message: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
) -> PublishResult:
    """Export `build_dir` and upload what changed to the dataset repo `repo_id`.

    `dry_run=True` only writes the folder that would be uploaded (to `out_dir`, default
    `BUILD/publish/<repo-name>/`) and returns it in `PublishResult.folder`. `revision`: the
    branch to commit to (created from the default branch when it does not exist yet).
    Progress: `pipeline.progress.advance("publish", rows)` while exporting, then per file
    uploaded. Raises `UnknownLicenseError` (see `export_build`) before anything is
    written or sent, and `PublishError` when no token is found.
    """
    _validate_repo_id(repo_id)
    folder = Path(out_dir).resolve() if out_dir else default_folder(build_dir, repo_id)
    export: ExportResult = export_build(
        build_dir,
        folder,
        max_shard_size=max_shard_size,
        inline_images=inline_images,
        allow_unknown_license=allow_unknown_license,
        repo_id=repo_id,
        progress_stage="publish",
    )
    rows = {config.name: config.rows for config in export.configs}
    base = {
        "repo_id": repo_id,
        "folder": export.root,
        "files": export.files,
        "license": export.license,
        "rows": rows,
    }
    if dry_run:
        logger.info("dry run: %d files for %s written to %s", len(export.files), repo_id, folder)
        return PublishResult(dry_run=True, **base)

    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token

    resolved_token = token or get_token()
    if not resolved_token:
        raise PublishError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write "
            "access to the repo's namespace)"
        )
    api = HfApi(endpoint=endpoint, token=resolved_token)
    repo_url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
    remote = _remote_files(api, repo_id, revision)
    local = [file_digest(export.root, relpath) for relpath in export.files]
    changed = [d for d in local if not is_unchanged(d, remote.get(d.path))]
    unchanged = tuple(d.path for d in local if d not in changed)
    local_paths = {d.path for d in local}
    stale = sorted(
        path for path in remote if path not in local_paths and path.startswith(MANAGED_PREFIXES)
    )
    logger.info(
        "publishing %s: %d files to upload, %d unchanged, %d stale to delete",
        repo_id,
        len(changed),
        len(unchanged),
        len(stale),
    )
    if not changed and not stale:
        return PublishResult(dry_run=False, unchanged=unchanged, repo_url=str(repo_url), **base)
    operations: list[Any] = [
        CommitOperationAdd(path_in_repo=d.path, path_or_fileobj=str(export.root / d.path))
        for d in changed
    ]
    operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
    build_name = Path(build_dir).resolve().name
    commit = api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or f"Publish conceptswap build {build_name}",
        repo_type="dataset",
        revision=revision,
    )
    progress.advance("publish", len(changed))
    logger.info("published %s: %s", repo_id, commit.commit_url)
    return PublishResult(
        dry_run=False,
        uploaded=tuple(d.path for d in changed),
        unchanged=unchanged,
        deleted=tuple(stale),
        commit_url=commit.commit_url,
        repo_url=str(repo_url),
        **base,
    )
