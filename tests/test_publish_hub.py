"""Publishing over real HTTP: a local stand-in for the Hugging Face Hub, then `load_dataset`.

`FakeHub` is a small Starlette app served by uvicorn in a thread on 127.0.0.1 (free port). It
implements what `huggingface_hub` (create_repo, preupload, LFS batch + upload + verify, the
NDJSON commit, tree / paths-info listing, resolve) and `datasets.load_dataset(repo_id)` use.

`huggingface_hub` and `datasets` read `HF_ENDPOINT` / `HF_HUB_OFFLINE` when they are imported,
and the test session is offline (conftest), so the Hub client runs in a subprocess with its own
environment: `HF_ENDPOINT` at the fake hub, `HF_HUB_DISABLE_XET=1` (plain LFS uploads), the
offline variables unset, a private `HF_HOME`, and a made-up `HF_TOKEN` that the fake hub
requires on writes and that must never appear in the subprocess's output or files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_conceptswapTestToken0123456789abcdefXYZ"
REPO_ID = "conceptswap-test/tiny-counterfactuals"
CONFIG = {
    "name": "hub",
    "source": {"kind": "samples", "names": ["coffee", "chelsea"]},
    "image": {"max_side": 96},
    "stylize": {"textures": ["snow"], "styles_per_texture": 2},
    "filter": {"require_clean_correct": False},
}


# -- the fake hub ------------------------------------------------------------------------------
def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


@dataclass
class Entry:
    """One file of a commit: regular content or an LFS object."""

    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def info(self, path: str) -> dict[str, Any]:
        if not self.lfs:
            return {
                "type": "file",
                "path": path,
                "size": len(self.data),
                "oid": git_blob_id(self.data),
            }
        pointer = lfs_pointer(self.sha256, len(self.data))
        return {
            "type": "file",
            "path": path,
            "size": len(self.data),
            "oid": git_blob_id(pointer),
            "lfs": {"oid": self.sha256, "size": len(self.data), "pointerSize": len(pointer)},
        }


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: list[tuple[str, dict[str, Entry]]] = field(default_factory=list)

    def head(self) -> tuple[str, dict[str, Entry]]:
        return self.commits[-1]

    def at(self, revision: str) -> tuple[str, dict[str, Entry]] | None:
        if revision in ("main", "refs/heads/main"):
            return self.head()
        return next((c for c in self.commits if c[0] == revision), None)


class FakeHub:
    """Just enough of the Hub's HTTP API for publish + load_dataset; records every request."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.lfs_uploads: list[str] = []
        self.commits_received: list[list[dict[str, Any]]] = []
        self.unauthorized: list[str] = []
        self.not_found: list[str] = []
        self.authorized_requests = 0
        self.base_url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.app = self._make_app()

    # -- helpers
    def _authorized(self, request: Any) -> bool:
        ok = request.headers.get("authorization") == f"Bearer {self.token}"
        self.authorized_requests += ok
        return ok

    def _repo(self, kind: str, namespace: str, name: str) -> Repo | None:
        return self.repos.get((kind, f"{namespace}/{name}"))

    def _commit(self, repo: Repo, files: dict[str, Entry], summary: str) -> str:
        parent = repo.commits[-1][0] if repo.commits else ""
        listing = json.dumps({p: e.sha256 for p, e in sorted(files.items())})
        sha = hashlib.sha1(f"{parent}\n{summary}\n{listing}".encode()).hexdigest()
        repo.commits.append((sha, files))
        return sha

    def _make_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        hub = self

        def error(status: int, message: str, code: str | None = None) -> Response:
            headers = {"X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            return JSONResponse({"error": message}, status_code=status, headers=headers)

        def repo_or_404(request: Request) -> Repo | Response:
            p = request.path_params
            repo = hub._repo(p["kind"].rstrip("s"), p["namespace"], p["name"])
            if repo is None:
                return error(404, "Repository not found", "RepoNotFound")
            if repo.private and not hub._authorized(request):
                return error(404, "Repository not found", "RepoNotFound")
            return repo

        def revision_or_404(request: Request) -> Any:
            """(commit sha, files) of the repo at the request's revision, or the 404 response."""
            repo = repo_or_404(request)
            if isinstance(repo, Response):
                return repo
            found = repo.at(request.path_params["revision"])
            if found is None:
                return error(404, "Invalid rev id", "RevisionNotFound")
            return found

        async def create_repo(request: Request) -> Response:
            if not hub._authorized(request):
                hub.unauthorized.append(str(request.url))
                return error(401, "Invalid credentials in Authorization header")
            body = await request.json()
            kind = body.get("type") or "model"
            repo_id = f"{body.get('organization')}/{body['name']}"
            prefix = "" if kind == "model" else f"{kind}s/"
            url = f"{hub.base_url}/{prefix}{repo_id}"
            if (kind, repo_id) in hub.repos:  # the Hub's 409 carries the repo url too
                message = f"You already created this {kind} repo"
                headers = {"X-Error-Message": message}
                return JSONResponse({"error": message, "url": url}, 409, headers=headers)
            repo = Repo(kind, repo_id, body.get("visibility") == "private")
            hub.repos[(kind, repo_id)] = repo
            attributes = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
            hub._commit(repo, {".gitattributes": Entry(attributes, lfs=False)}, "initial commit")
            return JSONResponse({"url": url, "name": repo_id, "id": repo_id})

        async def repo_info(request: Request) -> Response:
            repo = repo_or_404(request)
            if isinstance(repo, Response):
                return repo
            found = repo.at(request.path_params.get("revision", "main"))
            if found is None:
                return error(404, "Invalid rev id", "RevisionNotFound")
            sha, files = found
            return JSONResponse(
                {
                    "id": repo.repo_id,
                    "author": repo.repo_id.split("/")[0],
                    "sha": sha,
                    "private": repo.private,
                    "gated": False,
                    "disabled": False,
                    "downloads": 0,
                    "likes": 0,
                    "tags": [],
                    "lastModified": "2024-01-01T00:00:00.000Z",
                    "createdAt": "2024-01-01T00:00:00.000Z",
                    "siblings": [{"rfilename": p} for p in sorted(files)],
                    "cardData": {},
                }
            )

        async def validate_yaml(request: Request) -> Response:
            body = await request.json()
            if not str(body.get("content", "")).startswith("---\n"):
                return JSONResponse({"errors": [{"message": "no YAML front matter"}]}, 400)
            return JSONResponse({"warnings": [], "errors": []})

        async def preupload(request: Request) -> Response:
            if not hub._authorized(request):
                hub.unauthorized.append(str(request.url))
                return error(401, "Invalid credentials in Authorization header")
            repo = repo_or_404(request)
            if isinstance(repo, Response):
                return repo
            _, files = repo.head()
            out = []
            for item in (await request.json())["files"]:
                sample = base64.b64decode(item["sample"])
                binary = b"\0" in sample or item["path"].endswith(".parquet")
                lfs = binary or item["size"] > 10 * 1024 * 1024
                existing = files.get(item["path"])
                oid = None
                if existing is not None:
                    oid = existing.sha256 if existing.lfs else git_blob_id(existing.data)
                out.append(
                    {
                        "path": item["path"],
                        "uploadMode": "lfs" if lfs else "regular",
                        "shouldIgnore": False,
                        "oid": oid,
                    }
                )
            return JSONResponse({"files": out, "commitOid": repo.head()[0]})

        async def lfs_batch(request: Request) -> Response:
            if not hub._authorized(request):
                hub.unauthorized.append(str(request.url))
                return error(401, "Invalid credentials in Authorization header")
            body = await request.json()
            objects = []
            for obj in body["objects"]:
                oid, size = obj["oid"], obj["size"]
                entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                if oid not in hub.lfs_store:
                    entry["actions"] = {
                        "upload": {"href": f"{hub.base_url}/_lfs/upload/{oid}", "header": {}},
                        "verify": {"href": f"{hub.base_url}/_lfs/verify", "header": {}},
                    }
                objects.append(entry)
            return JSONResponse(
                {"transfer": "basic", "objects": objects},
                media_type="application/vnd.git-lfs+json",
            )

        async def lfs_upload(request: Request) -> Response:
            data = await request.body()
            oid = request.path_params["oid"]
            if hashlib.sha256(data).hexdigest() != oid:
                return error(400, "sha256 mismatch")
            hub.lfs_store[oid] = data
            hub.lfs_uploads.append(oid)
            return Response(status_code=200)

        async def lfs_verify(request: Request) -> Response:
            if not hub._authorized(request):
                return error(401, "Invalid credentials in Authorization header")
            body = await request.json()
            stored = hub.lfs_store.get(body["oid"])
            if stored is None or len(stored) != body["size"]:
                return error(404, "object not found")
            return JSONResponse({"ok": True})

        async def commit(request: Request) -> Response:
            if not hub._authorized(request):
                hub.unauthorized.append(str(request.url))
                return error(401, "Invalid credentials in Authorization header")
            repo = repo_or_404(request)
            if isinstance(repo, Response):
                return repo
            lines = [json.loads(x) for x in (await request.body()).splitlines() if x.strip()]
            hub.commits_received.append(lines)
            _, files = repo.head()
            files = dict(files)
            summary = ""
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    summary = value.get("summary", "")
                elif key == "file":
                    data = base64.b64decode(value["content"])
                    files[value["path"]] = Entry(data, lfs=False)
                elif key == "lfsFile":
                    data = hub.lfs_store.get(value["oid"])
                    if data is None:
                        return error(422, f"LFS object {value['oid']} was not uploaded")
                    files[value["path"]] = Entry(data, lfs=True)
                elif key == "deletedFile":
                    if value["path"] not in files:
                        return error(404, "A file with this name doesn't exist", "EntryNotFound")
                    del files[value["path"]]
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: e for p, e in files.items() if not p.startswith(prefix)}
                else:
                    return error(400, f"unknown commit operation {key}")
            sha = hub._commit(repo, files, summary)
            kind = request.path_params["kind"]
            return JSONResponse(
                {
                    "success": True,
                    "commitOid": sha,
                    "commitUrl": f"{hub.base_url}/{kind}/{repo.repo_id}/commit/{sha}",
                    "pullRequestUrl": None,
                }
            )

        def listing(files: dict[str, Entry], prefix: str, recursive: bool) -> list[dict]:
            base = prefix.strip("/")
            inside = {
                p: e for p, e in files.items() if not base or p.startswith(base + "/") or p == base
            }
            out: dict[str, dict[str, Any]] = {}
            for path, entry in sorted(inside.items()):
                rest = path[len(base) + 1 :] if base else path
                parts = rest.split("/")
                for depth in range(1, len(parts)):
                    folder = "/".join(([base] if base else []) + parts[:depth])
                    if depth == 1 or recursive:
                        oid = hashlib.sha1(folder.encode()).hexdigest()
                        out.setdefault(folder, {"type": "directory", "path": folder, "oid": oid})
                    if not recursive:
                        break
                if len(parts) == 1 or recursive:
                    out[path] = entry.info(path)
            return [out[k] for k in sorted(out)]

        async def tree(request: Request) -> Response:
            found = revision_or_404(request)
            if isinstance(found, Response):
                return found
            path = request.path_params.get("path", "")
            recursive = request.query_params.get("recursive", "false").lower() == "true"
            items = listing(found[1], path, recursive)
            if path and not items:
                return error(404, f"{path} does not exist", "EntryNotFound")
            return JSONResponse(items)

        async def paths_info(request: Request) -> Response:
            found = revision_or_404(request)
            if isinstance(found, Response):
                return found
            form = parse_qs((await request.body()).decode())
            files = found[1]
            out = []
            for path in form.get("paths", []):
                if path in files:
                    out.append(files[path].info(path))
                elif any(p.startswith(path.rstrip("/") + "/") for p in files):
                    oid = hashlib.sha1(path.encode()).hexdigest()
                    out.append({"type": "directory", "path": path, "oid": oid})
            return JSONResponse(out)

        async def resolve(request: Request) -> Response:
            found = revision_or_404(request)
            if isinstance(found, Response):
                return found
            sha, files = found
            path = request.path_params["path"]
            entry = files.get(path)
            if entry is None:
                return error(404, "Entry not found", "EntryNotFound")
            info = entry.info(path)
            headers = {
                "X-Repo-Commit": sha,
                "ETag": f'"{info["oid"]}"',
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
            }
            if entry.lfs:
                headers["X-Linked-Etag"] = f'"{entry.sha256}"'
                headers["X-Linked-Size"] = str(len(entry.data))
            data = entry.data
            status = 200
            spec = request.headers.get("range", "")
            if spec.startswith("bytes="):
                start_text, _, end_text = spec[6:].partition("-")
                if start_text:
                    start = int(start_text)
                    end = min(int(end_text), len(data) - 1) if end_text else len(data) - 1
                else:  # suffix range: the last N bytes
                    start, end = max(0, len(data) - int(end_text)), len(data) - 1
                if start >= len(data):
                    headers["Content-Range"] = f"bytes */{len(data)}"
                    return Response(status_code=416, headers=headers)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start : end + 1], 206
            headers["Content-Length"] = str(len(data))
            if request.method == "HEAD":
                return Response(status_code=status, headers=headers)
            return Response(data, status_code=status, headers=headers)

        async def not_found(request: Request, exc: Exception) -> Response:
            hub.not_found.append(f"{request.method} {request.url.path}")
            return error(404, "Not found")

        kind = "{kind:str}/{namespace:str}/{name:str}"
        routes = [
            Route("/api/repos/create", create_repo, methods=["POST"]),
            Route("/api/validate-yaml", validate_yaml, methods=["POST"]),
            Route(f"/api/{kind}", repo_info, methods=["GET"]),
            Route(f"/api/{kind}/revision/{{revision:path}}", repo_info, methods=["GET"]),
            Route(f"/api/{kind}/preupload/{{revision:str}}", preupload, methods=["POST"]),
            Route(f"/api/{kind}/commit/{{revision:str}}", commit, methods=["POST"]),
            Route(f"/api/{kind}/paths-info/{{revision:str}}", paths_info, methods=["POST"]),
            Route(f"/api/{kind}/tree/{{revision:str}}", tree, methods=["GET"]),
            Route(f"/api/{kind}/tree/{{revision:str}}/{{path:path}}", tree, methods=["GET"]),
            Route(
                "/{kind:str}/{namespace:str}/{name:str}.git/info/lfs/objects/batch",
                lfs_batch,
                methods=["POST"],
            ),
            Route("/_lfs/upload/{oid:str}", lfs_upload, methods=["PUT"]),
            Route("/_lfs/verify", lfs_verify, methods=["POST"]),
            Route(
                f"/{kind}/resolve/{{revision:str}}/{{path:path}}",
                resolve,
                methods=["GET", "HEAD"],
            ),
        ]
        app = Starlette(routes=routes, exception_handlers={404: not_found})

        async def recording_app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                hub.requests.append((scope["method"], scope["path"]))
            await app(scope, receive, send)

        return recording_app

    # -- serving
    def start(self) -> FakeHub:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake hub did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


# -- the Hub client, run in a subprocess -------------------------------------------------------
def client_main(build: str, repo_id: str, out: str) -> None:
    """Publish, read back with `load_dataset`, publish again; print one JSON line of results."""
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    from datasets import Image, load_dataset

    from pipeline.publish import publish

    first = publish(build, repo_id, out_dir=Path(out) / "first")
    loaded: dict[str, Any] = {}
    for config in first.rows:
        ds = load_dataset(repo_id, config, split="train")
        features = {k: repr(v)[:40] for k, v in ds.features.items()}
        loaded[config] = {"rows": ds.num_rows, "features": features}
        if config == "counterfactuals":
            images = load_dataset(repo_id, "images", split="train")
            raw = images.cast_column("image", Image(decode=False))
            index = {image_id: i for i, image_id in enumerate(raw["image_id"])}
            loaded[config]["first_image_id"] = ds[0]["image_id"]
            loaded[config]["first_image_sha256"] = hashlib.sha256(
                raw[index[ds[0]["image_id"]]]["image"]["bytes"]
            ).hexdigest()
            loaded[config]["first_label"] = ds[0]["label"]
            loaded[config]["first_label_name"] = ds.features["label"].int2str(ds[0]["label"])
            loaded[config]["label_names"] = ds.features["label"].num_classes
            loaded[config]["decoded_size"] = list(ds[0]["counterfactual"].size)
            loaded[config]["first_cf_id"] = ds[0]["cf_id"]
            loaded[config]["verdicts"] = sorted(ds[0]["verdicts"])
    second = publish(build, repo_id, out_dir=Path(out) / "second")
    third = publish(build, repo_id, out_dir=Path(out) / "third", max_shard_size="20kB")
    results = {"first": first, "second": second, "third": third}
    summary = {name: result.to_dict() for name, result in results.items()}
    print("RESULT " + json.dumps({**summary, "loaded": loaded}))


def run_client(hub: FakeHub, build: Path, tmp: Path) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=hub.base_url,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(tmp / "hf-home"),
        HF_TOKEN=TOKEN,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_DEBUG="1",  # huggingface_hub logs every request as curl (Authorization redacted)
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
    )
    code = (
        "import sys; from test_publish_hub import client_main; "
        "client_main(sys.argv[1], sys.argv[2], sys.argv[3])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(build), REPO_ID, str(tmp / "exports")],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT ")), output


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> Path:
    """Two sample photos, one texture; plus one hand-made edit case for the `cases` config."""
    from flows.build import build_dataset
    from pipeline.cases import EditCase

    out = tmp_path_factory.mktemp("hub-build")
    build_dataset(config=CONFIG, out=str(out))
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    images = sorted({r["image_id"] for r in rows})
    case = EditCase(
        case_id="background-snow-0-test",
        concept="background",
        texture="snow",
        target_class=967,
        train_style="snow/0",
        train=[rows[0]["cf_id"]],
        test_groups={"target_train_style": [rows[1]["cf_id"]], "other_heldout_style": []},
        validation=images[:1],
        heldout=images[1:],
        seed=0,
        params={"n_train": 1, "min_test": 0, "clean_frac": 0.5},
    )
    (out / "cases").mkdir()
    (out / "cases" / f"{case.case_id}.json").write_text(case.to_json())
    return out


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    server = FakeHub(TOKEN).start()
    yield server
    server.stop()


# -- tests -------------------------------------------------------------------------------------
def test_publish_load_dataset_and_republish_over_http(
    tiny_build: Path, hub: FakeHub, tmp_path: Path
) -> None:
    result, output = run_client(hub, tiny_build, tmp_path)
    manifest = pq.read_table(tiny_build / "manifest.parquet").to_pylist()

    first, second, loaded = result["first"], result["second"], result["loaded"]
    assert first["files_uploaded"] == 4  # README + one shard per config
    assert sorted(first["uploaded"]) == [
        "README.md",
        "data/cases/train-00000-of-00001.parquet",
        "data/counterfactuals/train-00000-of-00001.parquet",
        "data/images/train-00000-of-00001.parquet",
    ]
    assert first["rows"] == {"counterfactuals": len(manifest), "images": 2, "cases": 1}

    # read back with load_dataset(repo_id): rows, features, an image byte-identical to the build
    cfs = loaded["counterfactuals"]
    assert cfs["rows"] == len(manifest)
    assert "image" not in cfs["features"]  # stored once, in the `images` config
    assert cfs["features"]["mask"].startswith("Image(")
    assert cfs["features"]["counterfactual"].startswith("Image(")
    assert cfs["features"]["label"].startswith("ClassLabel(")
    assert cfs["features"]["cf_pred"].startswith("ClassLabel(")
    assert cfs["label_names"] == 1001  # ImageNet + `unlabelled`
    assert loaded["cases"]["rows"] == 1
    assert loaded["cases"]["features"]["target_class"].startswith("ClassLabel(")
    first_row = min(manifest, key=lambda r: r["cf_id"])
    assert cfs["first_cf_id"] == first_row["cf_id"]
    images = {
        i["image_id"]: i for i in pq.read_table(tiny_build / "manifests/images.parquet").to_pylist()
    }
    original = (tiny_build / images[cfs["first_image_id"]]["path"]).read_bytes()
    assert cfs["first_image_sha256"] == hashlib.sha256(original).hexdigest()
    assert cfs["first_label"] == (first_row["label"] if first_row["label"] is not None else 1000)
    assert cfs["first_label_name"] != ""

    # re-publishing the unchanged build uploads nothing and makes no commit
    assert second["files_uploaded"] == 0
    assert sorted(second["unchanged"]) == sorted(first["files"])
    assert second["commit_url"] is None
    assert not hub.not_found, hub.not_found

    # a new shard layout uploads the new shards and deletes the stale one in the same commit
    third = result["third"]
    assert third["deleted"] == [  # both image-bearing configs now have several shards
        "data/counterfactuals/train-00000-of-00001.parquet",
        "data/images/train-00000-of-00001.parquet",
    ]
    new_shards = [f for f in third["uploaded"] if f.startswith("data/counterfactuals/")]
    assert len(new_shards) > 1 and "README.md" in third["uploaded"]
    assert "data/cases/train-00000-of-00001.parquet" in third["unchanged"]
    _, files = hub.repos[("dataset", REPO_ID)].head()
    assert sorted(f for f in files if f.startswith("data/counterfactuals/")) == sorted(new_shards)

    # commits: first and third publish only; LFS uploads: the first two shards + the new ones
    assert len(hub.commits_received) == 2
    new_data = [f for f in third["uploaded"] if f.startswith("data/")]
    assert len(hub.lfs_uploads) == 3 + len(new_data)

    # the token was used (writes are refused without it) and never shown or written anywhere
    assert hub.authorized_requests > 0 and not hub.unauthorized
    assert TOKEN not in output
    assert "Request" in output  # huggingface_hub's debug logging was on and captured
    for path in (tmp_path / "exports").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for path in tiny_build.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_dry_run_writes_the_exact_folder_and_export_is_deterministic(
    tiny_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog, capsys
) -> None:
    from pipeline.publish import default_folder, publish, read_export_bytes

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    result = publish(tiny_build, REPO_ID, dry_run=True)
    assert result.folder == default_folder(tiny_build, REPO_ID)
    assert result.folder == tiny_build / "publish" / "tiny-counterfactuals"
    assert result.files_uploaded == 0
    files = read_export_bytes(result.folder)
    assert sorted(files) == sorted(result.files)
    again = publish(tiny_build, REPO_ID, dry_run=True, out_dir=tmp_path / "again")
    assert read_export_bytes(again.folder) == files  # same build, same bytes

    card = files["README.md"].decode()
    assert "task_categories:\n- image-classification" in card
    assert "config_name: counterfactuals" in card and "config_name: cases" in card
    assert "path: data/counterfactuals/train-*" in card
    assert "timm:tf_efficientnet_lite0@" in card  # model id with its weights hash
    assert "CC0-1.0" in card  # source and texture licenses
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err + caplog.text


def test_shards_respect_the_max_shard_size(tiny_build: Path, tmp_path: Path) -> None:
    from pipeline.publish import export_build

    result = export_build(tiny_build, tmp_path / "small", max_shard_size="20kB")
    (config,) = [c for c in result.configs if c.name == "counterfactuals"]
    assert len(config.files) > 1
    assert config.files[0].endswith(f"train-00000-of-{len(config.files):05d}.parquet")
    rows = sum(pq.read_metadata(result.root / f).num_rows for f in config.files)
    assert rows == config.rows == pq.read_metadata(tiny_build / "manifest.parquet").num_rows


def test_unknown_source_license_is_refused_unless_allowed(tiny_build: Path, tmp_path: Path) -> None:
    import shutil

    from pipeline.publish import UnknownLicenseError, publish

    build = tmp_path / "no-license"
    shutil.copytree(tiny_build, build, ignore=shutil.ignore_patterns("publish"))
    images = pq.read_table(build / "manifests/images.parquet")
    metas = [json.loads(m) for m in images.column("source_meta").to_pylist()]
    metas[0].pop("license")
    column = pa.array([json.dumps(m, sort_keys=True) for m in metas])
    images = images.set_column(images.schema.get_field_index("source_meta"), "source_meta", column)
    pq.write_table(images, build / "manifests/images.parquet")

    with pytest.raises(UnknownLicenseError, match="1 of 2 source images have no license"):
        publish(build, REPO_ID, dry_run=True)
    assert not (build / "publish").exists()

    # an audit report adds the sensitivity summary to the card
    report = build / "report" / "timm-tf_efficientnet_lite0-abc"
    report.mkdir(parents=True)
    stats = {"concept": ["background"], "n": [4], "cf_flip": [0.5], "ctrl_flip": [0.25]}
    pq.write_table(pa.table({**stats, "sens_flip": [0.25]}), report / "by_concept.parquet")
    result = publish(build, REPO_ID, dry_run=True, allow_unknown_license=True)
    card = (result.folder / "README.md").read_text()
    assert "license: other" in card
    assert "## Sensitivity summary" in card
    assert "| background | 4 | 0.500 | 0.250 | 0.250 |" in card


def test_publish_command_dry_run_and_license_refusal(tiny_build: Path, tmp_path: Path) -> None:
    import shutil

    import typer
    from typer.testing import CliRunner

    from flows.cli_data import register

    app = typer.Typer()
    register(app)
    cli = CliRunner()
    result = cli.invoke(app, ["publish", str(tiny_build), "--repo-id", REPO_ID, "--dry-run"])
    assert result.exit_code == 0, result.output
    folder = tiny_build / "publish" / "tiny-counterfactuals"
    assert str(folder) in result.output and (folder / "README.md").is_file()

    # --out-dir and --max-shard-size: the folder anywhere, smaller shards
    elsewhere = tmp_path / "elsewhere"
    args = ["--out-dir", str(elsewhere), "--max-shard-size", "20kB", "--revision", "v1"]
    moved = cli.invoke(app, ["publish", str(tiny_build), "--repo-id", REPO_ID, "--dry-run", *args])
    assert moved.exit_code == 0, moved.output
    shards = sorted((elsewhere / "data" / "counterfactuals").glob("train-*.parquet"))
    assert len(shards) > 1 and (elsewhere / "README.md").is_file()
    bad_size = cli.invoke(
        app,
        ["publish", str(tiny_build), "--repo-id", REPO_ID, "--dry-run", "--max-shard-size", "big"],
    )
    assert bad_size.exit_code == 2 and "cannot read size" in bad_size.output

    bad = cli.invoke(app, ["publish", str(tiny_build), "--repo-id", "not a repo id", "--dry-run"])
    assert bad.exit_code == 2 and "error" in bad.output

    build = tmp_path / "no-license"
    shutil.copytree(tiny_build, build, ignore=shutil.ignore_patterns("publish"))
    images = pq.read_table(build / "manifests/images.parquet")
    metas = [json.loads(m) for m in images.column("source_meta").to_pylist()]
    metas = [{k: v for k, v in m.items() if k != "license"} for m in metas]
    column = pa.array([json.dumps(m, sort_keys=True) for m in metas])
    images = images.set_column(images.schema.get_field_index("source_meta"), "source_meta", column)
    pq.write_table(images, build / "manifests/images.parquet")
    refused = cli.invoke(app, ["publish", str(build), "--repo-id", REPO_ID, "--dry-run"])
    assert refused.exit_code == 2 and "license" in refused.output
    assert not (build / "publish").exists()


def test_plain_export_columns_take_their_types_from_the_records() -> None:
    """Given the record declarations, the export's plain columns have the same types; the
    labels are `ClassLabel`s and the nested values decoded structures, declared for the export."""
    from datasets import ClassLabel, Image, Value

    from pipeline.publish import counterfactual_features
    from pipeline.records import Counterfactual

    features = counterfactual_features(["mask_quality"])
    labels = {"label", "clean_pred", "cf_pred"}
    plain = [c for c in Counterfactual.columns() if c.name in features and not c.json]
    assert {c.name for c in plain} >= {"cf_id", "blend", "kept", "clean_true_prob"}
    for column in plain:
        if column.name not in labels:
            assert features[column.name] == Value(column.dtype), column.name
    assert all(isinstance(features[name], ClassLabel) for name in labels)
    assert all(isinstance(features[n], Image) for n in ("mask", "counterfactual"))
    assert "image" not in features  # joined from the `images` config by `image_id`
    assert isinstance(counterfactual_features([], inline_images=True)["image"], Image)
    assert features["label"].int2str(1000) == "unlabelled"
    schema = features.arrow_schema
    topk = pa.list_(pa.struct([("class", pa.int64()), ("prob", pa.float64())]))
    assert schema.field("clean_topk").type == topk == schema.field("cf_topk").type
    verdict = pa.struct([("ok", pa.bool_()), ("reason", pa.string())])
    assert schema.field("verdicts").type == pa.struct([("mask_quality", verdict)])
