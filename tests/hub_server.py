"""A loopback stand-in for the Hugging Face Hub: the few routes huggingface_hub uses to push and pull.

Standard-library ``http.server`` in a thread. It keeps repos in memory (commits as full file maps,
branches, tags) and records every request, so tests can assert on what the real client sent.

Routes (all for any repo type, ``{t}`` = models|datasets|spaces):
    POST /api/repos/create                        create (409 if it exists)
    GET  /api/{t}/{repo}/refs                     branches and tags
    GET  /api/{t}/{repo}/revision/{rev}           repo info at a revision (sha, siblings)
    GET  /api/{t}/{repo}/tree/{rev}[/{path}]      file listing (recursive)
    POST /api/{t}/{repo}/preupload/{rev}          upload mode: always "regular" (inline in the commit)
    POST /api/{t}/{repo}/commit/{rev}             NDJSON commit: file / deletedFile / deletedFolder
    POST /api/{t}/{repo}/tag/{rev}                create a tag (409 if it exists)
    POST /api/validate-yaml                       README metadata check (accepts everything)
    HEAD|GET /{t}/{repo}/resolve/{rev}/{path}     file metadata / content
Anything else answers 404 and is recorded, so an unexpected route shows up in ``requests``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


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

    def resolve(self, rev: str) -> str | None:
        rev = unquote(rev)
        return self.branches.get(rev) or self.tags.get(rev) or (rev if rev in self.commits else None)


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
            files = repo.commits[oid] if oid else {}
            return _json(200, {"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                 "oid": git_blob_oid(files[f["path"]]) if f["path"] in files else None}
                for f in req.json()["files"]]})
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
            entries = [{"type": "file", "path": p, "size": len(b), "oid": git_blob_oid(b)}
                       for p, b in sorted(files.items()) if not prefix or p.startswith(prefix + "/")]
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
        return 200, headers, data

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
            else:  # lfsFile etc.: this server never asks for LFS uploads
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
            length = int(self.headers.get("Content-Length") or 0)
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
