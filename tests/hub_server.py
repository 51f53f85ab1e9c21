"""A loopback stand-in for the Hugging Face Hub: the few routes huggingface_hub uses to push and pull.

Standard-library ``http.server`` in a thread. It keeps repos in memory (commits as full file maps,
branches, tags) and records every request, so tests can assert on what the real client sent.

Routes (all for any repo type, ``{t}`` = models|datasets|spaces):
    POST /api/repos/create                        create (409 if it exists)
    GET  /api/{t}/{repo}/refs                     branches and tags
    GET  /api/{t}/{repo}/revision/{rev}           repo info at a revision (sha, siblings)
    GET  /api/{t}/{repo}/tree/{rev}[/{path}]      file listing (recursive)
    GET  /api/{t}/{repo}                          repo info at main
    POST /api/{t}/{repo}/preupload/{rev}          upload mode: "lfs" for files .gitattributes sends to LFS,
                                                  binary samples (NUL or not UTF-8) and files >= 10 MiB, as
                                                  the Hub does; "regular" (inline in the commit) otherwise
    POST /{t}/{repo}.git/info/lfs/objects/batch   LFS batch API: an upload (PUT href) + verify action per
                                                  object the repo lacks, none for one it has
    PUT  /lfs-objects/{t}/{repo}/{sha256}         the upload href: stores the body if its sha256 and size match
    POST /{t}/{repo}.git/info/lfs/objects/verify  200 if the object arrived, 404 otherwise
    POST /api/{t}/{repo}/commit/{rev}             NDJSON commit: file / lfsFile (an uploaded object) /
                                                  deletedFile / deletedFolder
    POST /api/{t}/{repo}/tag/{rev}                create a tag (409 if it exists)
    POST /api/validate-yaml                       README metadata check (accepts everything)
    HEAD|GET /{t}/{repo}/resolve/{rev}/{path}     file metadata / content
Anything else answers 404 and is recorded, so an unexpected route shows up in ``requests``.
The LFS path is what the real client takes for Parquet and array files when Xet is off
(``HF_HUB_DISABLE_XET=1``); with hf_xet on it would ask for a Xet token, which this server lacks.
"""

from __future__ import annotations

import base64
import codecs
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
LFS_MIN_BYTES = 10 * 1024 * 1024  # the Hub sends any file this large through LFS
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (sha256(data).encode(), len(data))


def is_binary(sample: bytes) -> bool:
    """NUL bytes or not UTF-8 (a character cut at the sample's end is fine)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return True
    return b"\0" in sample


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # oid -> {path: content}
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content, uploaded via LFS

    def resolve(self, rev: str) -> str | None:
        rev = unquote(rev)
        return self.branches.get(rev) or self.tags.get(rev) or (rev if rev in self.commits else None)

    def is_lfs(self, data: bytes) -> bool:
        """Stored through LFS: its content arrived as an LFS object."""
        return sha256(data) in self.lfs_objects

    def lfs_patterns(self, oid: str | None) -> list[str]:
        text = (self.commits[oid].get(".gitattributes", b"") if oid else GITATTRIBUTES).decode()
        return [line.split()[0] for line in text.splitlines() if "filter=lfs" in line.split()[1:]]


class HubServer:
    """``with HubServer() as hub: os.environ["HF_ENDPOINT"] = hub.url``"""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def calls(self, method: str, pattern: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    # -- route handlers: return (status, headers, body) ----------------------------------------------
    def create_repo(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        body = req.json()
        repo_type = body.get("type") or "model"
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        url = f"{self.url}/{_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            return _json(409, {"error": "You already created this repo", "url": url})
        repo = Repo(repo_type, repo_id, private=body.get("visibility") == "private" or bool(body.get("private")))
        self._add_commit(repo, "main", {".gitattributes": GITATTRIBUTES}, None)
        self.repos[(repo_type, repo_id)] = repo
        return _json(200, {"url": url, "name": repo_id, "id": repo_id})

    def api(self, req: Request, repo: Repo, action: str, rest: str) -> tuple[int, dict[str, str], bytes]:
        rev, _, subpath = rest.partition("/")
        if action == "refs":
            return _json(200, {
                "branches": [_ref(n, "heads", o) for n, o in repo.branches.items()],
                "tags": [_ref(n, "tags", o) for n, o in repo.tags.items()], "converts": []})
        oid = repo.resolve(rev or "main")
        if action == "preupload":
            return self._preupload(req, repo, oid)
        if action == "commit":
            return self._commit(req, repo, unquote(rev))
        if oid is None:
            return _json(404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"})
        if action == "tag":
            tag = req.json()["tag"]
            if tag in repo.tags:
                return _json(409, {"error": f"Tag {tag} already exists"})
            repo.tags[tag] = oid
            return _json(200, {"name": tag})
        files = repo.commits[oid]
        if action == "revision":
            return _json(200, {"id": repo.repo_id, "sha": oid, "private": repo.private,
                               "siblings": [{"rfilename": p, "size": len(b)} for p, b in sorted(files.items())]})
        if action == "tree":
            prefix = unquote(subpath).strip("/")
            entries = [_tree_entry(repo, p, b) for p, b in sorted(files.items())
                       if not prefix or p.startswith(prefix + "/")]
            return _json(200, entries)
        return _json(404, {"error": f"unknown route {req.path}"})

    def resolve_file(self, req: Request, repo: Repo, rest: str) -> tuple[int, dict[str, str], bytes]:
        rev, _, path = rest.partition("/")
        oid = repo.resolve(rev)
        path = unquote(path)
        if oid is None or path not in repo.commits[oid]:
            code = "RevisionNotFound" if oid is None else "EntryNotFound"
            return _json(404, {"error": f"{path} not found at {rev}"}, {"X-Error-Code": code})
        data = repo.commits[oid][path]
        headers = {"X-Repo-Commit": oid, "ETag": f'"{git_blob_oid(data)}"', "Content-Length": str(len(data)),
                   "Content-Type": "application/octet-stream"}
        if repo.is_lfs(data):  # as the Hub: the etag of an LFS file is its sha256
            headers.update({"ETag": f'"{sha256(data)}"', "X-Linked-Etag": f'"{sha256(data)}"',
                            "X-Linked-Size": str(len(data))})
        return 200, headers, data

    def _preupload(self, req: Request, repo: Repo, oid: str | None) -> tuple[int, dict[str, str], bytes]:
        files = repo.commits[oid] if oid else {}
        patterns = repo.lfs_patterns(oid)
        out = []
        for f in req.json()["files"]:
            path, sample = f["path"], base64.b64decode(f["sample"])
            lfs = (f["size"] >= LFS_MIN_BYTES or is_binary(sample)
                   or any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) or fnmatch.fnmatch(path, p) for p in patterns))
            old = files.get(path)
            remote = None if old is None else sha256(old) if repo.is_lfs(old) else git_blob_oid(old)
            out.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": remote})
        return _json(200, {"files": out})

    def lfs_batch(self, req: Request, repo: Repo, what: str) -> tuple[int, dict[str, str], bytes]:
        body = req.json()
        base = f"{self.url}/{_PREFIX[repo.repo_type]}{repo.repo_id}.git/info/lfs/objects"
        if what == "verify":
            ok = body["oid"] in repo.lfs_objects and len(repo.lfs_objects[body["oid"]]) == body["size"]
            return _json(200 if ok else 404, {"message": "ok" if ok else "object not found"})
        if body.get("operation") != "upload" or body.get("hash_algo", "sha256") != "sha256":
            return _json(422, {"message": "this server only takes sha256 uploads"})
        objects = []
        for obj in body["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in repo.lfs_objects:  # no actions: the client skips what the Hub already has
                href = f"{self.url}/lfs-objects/{repo.repo_type}/{repo.repo_id}/{obj['oid']}?size={obj['size']}"
                entry["actions"] = {"upload": {"href": href, "expires_in": 900},
                                    "verify": {"href": f"{base}/verify", "header": {}}}
            objects.append(entry)
        return _json(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                     {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, req: Request, repo: Repo, oid: str) -> tuple[int, dict[str, str], bytes]:
        size = int(req.query.get("size", ["-1"])[0])
        if sha256(req.body) != oid or len(req.body) != size:
            return _json(400, {"error": f"body does not match sha256 {oid} and size {size}"})
        repo.lfs_objects[oid] = req.body
        return 200, {"ETag": f'"{oid}"'}, b""

    def _commit(self, req: Request, repo: Repo, branch: str) -> tuple[int, dict[str, str], bytes]:
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        parent = repo.branches.get(branch)
        if parent is None:
            return _json(404, {"error": f"branch {branch} not found"}, {"X-Error-Code": "RevisionNotFound"})
        files = dict(repo.commits[parent])
        for item in lines[1:]:
            key, value = item["key"], item["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {p: b for p, b in files.items() if not p.startswith(folder)}
            elif key == "lfsFile":  # the content must have come through the LFS batch API first
                if value.get("algo") != "sha256" or value["oid"] not in repo.lfs_objects:
                    return _json(400, {"error": f"{value['path']}: LFS object {value['oid']} was never uploaded"})
                files[value["path"]] = repo.lfs_objects[value["oid"]]
            else:
                return _json(400, {"error": f"unsupported commit operation {key}"})
        oid = self._add_commit(repo, branch, files, lines[0]["value"]["summary"])
        url = f"{self.url}/{_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{oid}"
        return _json(200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None})

    def _add_commit(self, repo: Repo, branch: str, files: dict[str, bytes], message: str | None) -> str:
        h = hashlib.sha1(repr((repo.branches.get(branch), message, sorted(files.items()))).encode())
        oid = h.hexdigest()
        repo.commits[oid] = files
        repo.branches[branch] = oid
        return oid

    def dispatch(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append(req)
            path = req.path
            if path == "/api/repos/create" and req.method == "POST":
                return self.create_repo(req)
            if path == "/api/validate-yaml":
                return _json(200, {"errors": [], "warnings": []})
            m = re.match(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)$", path)
            if m and req.method == "GET":
                repo = self.repos.get((m[1][:-1], m[2]))
                if repo is None:
                    return _json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return self.api(req, repo, "revision", "main")
            m = re.match(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)\.git/info/lfs/objects/(batch|verify)$", path)
            if m and req.method == "POST":
                repo = self.repos.get(((m[1] or "models")[:-1], m[2]))
                if repo is None:
                    return _json(404, {"message": "Repository not found"})
                return self.lfs_batch(req, repo, m[3])
            m = re.match(r"^/lfs-objects/(model|dataset|space)/([^/]+/[^/]+)/([0-9a-f]{64})$", path)
            if m and req.method == "PUT":
                repo = self.repos.get((m[1], m[2]))
                if repo is None:
                    return _json(404, {"error": "Repository not found"})
                return self.lfs_put(req, repo, m[3])
            m = re.match(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)/(\w+)(?:/(.*))?$", path)
            if m:
                repo = self.repos.get((m[1][:-1], m[2]))
                if repo is None:
                    return _json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return self.api(req, repo, m[3], m[4] or "")
            m = re.match(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/(.*)$", path)
            if m:
                repo = self.repos.get(((m[1] or "models")[:-1], m[2]))
                if repo is None:
                    return _json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return self.resolve_file(req, repo, m[3])
            return _json(404, {"error": f"unknown route {req.method} {path}"})


def _tree_entry(repo: Repo, path: str, data: bytes) -> dict[str, Any]:
    if not repo.is_lfs(data):
        return {"type": "file", "path": path, "size": len(data), "oid": git_blob_oid(data)}
    pointer = lfs_pointer(data)
    return {"type": "file", "path": path, "size": len(data), "oid": git_blob_oid(pointer),
            "lfs": {"oid": sha256(data), "size": len(data), "pointerSize": len(pointer)}}


def _ref(name: str, kind: str, oid: str) -> dict[str, str]:
    return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


def _handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)  # the client sizes its LFS PUTs too
            body = self.rfile.read(length) if length else b""
            req = Request(self.command, parts.path, parse_qs(parts.query),
                          {k.lower(): v for k, v in self.headers.items()}, body)
            status, headers, payload = server.dispatch(req)
            self.send_response(status)
            headers.setdefault("Content-Length", str(len(payload)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _serve

    return Handler
