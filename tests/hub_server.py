#!/usr/bin/python3
"""An imitation of the Hugging Face hub's download protocol, for pull_test, on 127.0.0.1 only.

Serves one model repository built from a folder: GET /api/models/{repo}/revision/{rev} (JSON `sha` and
`siblings`), HEAD/GET /{repo}/resolve/{rev}/{file}. Small files answer directly with a git-sha1 ETag; LFS
files answer with a 302 to another host and path (the "CDN", http://localhost:PORT/cdn/<sha256>), carrying
X-Linked-Etag (the sha256) and X-Linked-Size, and the CDN honours Range requests. Every answer to the
repository carries X-Repo-Commit. Faults on request: a token required, a repository that answers 403, a
renamed repository that answers with relative redirects, an LFS body cut once half way (or every time),
an LFS body with one byte changed. Prints the port it listens on, then one JSON line per request to --log.
"""
import argparse
import hashlib
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

README = b"---\nlicense: other\n---\n# tiny-test\nRandom weights for tests.\n"
NOTES = b"notes kept in a folder\n"


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def build_repo(folder, lfs_names):
    """{path: (bytes, is_lfs)} from the folder, plus a README, .gitattributes and a nested file."""
    files = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith("expected"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            files[name] = (f.read(), name in lfs_names)
    files["README.md"] = (README, False)
    attributes = b"".join(b"%s filter=lfs diff=lfs merge=lfs -text\n" % n.encode() for n in sorted(lfs_names))
    files[".gitattributes"] = (attributes, False)
    files["nested/deeper/notes.txt"] = (NOTES, False)
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--lfs", action="append", default=[], help="files served as LFS blobs")
    ap.add_argument("--log", required=True)
    ap.add_argument("--token", default="", help="require 'Authorization: Bearer TOKEN'")
    ap.add_argument("--forbid", action="store_true", help="answer 403 (a gated repository)")
    ap.add_argument("--renamed", default="", help="an old id that redirects (relative) to --repo")
    ap.add_argument("--drop-once", default="", help="cut this LFS body half way, the first time only")
    ap.add_argument("--cut-then-refuse", default="", help="cut this LFS body half way, then close every later "
                    "request for it without an answer")
    ap.add_argument("--ghost", default="", help="a file the listing names but resolve does not find")
    ap.add_argument("--corrupt", default="", help="serve this LFS file with one byte changed")
    args = ap.parse_args()

    files = build_repo(args.dir, set(args.lfs))
    commit = hashlib.sha1(b"".join(n.encode() + d for n, (d, _) in sorted(files.items()))).hexdigest()
    tags = {"main": commit, "v1.0": commit, commit: commit}
    blobs = {hashlib.sha256(d).hexdigest(): (n, d) for n, (d, lfs) in files.items() if lfs}
    dropped = set()
    lock = threading.Lock()
    log = open(args.log, "a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def record(self, status):
            entry = {"method": self.command, "path": self.path, "status": status,
                     "host": self.headers.get("Host", ""), "range": self.headers.get("Range", ""),
                     "auth": self.headers.get("Authorization", "")}
            with lock:
                log.write(json.dumps(entry) + "\n")
                log.flush()

        def answer(self, status, headers=None, body=b""):
            self.record(status)
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def error(self, status, code="", message=""):
            headers = {"Content-Type": "application/json"}
            if code:
                headers["X-Error-Code"] = code
            if message:
                headers["X-Error-Message"] = message
            self.answer(status, headers, json.dumps({"error": message or code}).encode())

        def authorized(self):
            if args.token and self.headers.get("Authorization", "") != "Bearer " + args.token:
                self.error(401, message="Invalid credentials in Authorization header")
                return False
            if args.forbid:
                self.error(403, "GatedRepo", "Access to model is restricted")
                return False
            return True

        def cdn(self, path):
            sha = path[len("/cdn/"):]
            if sha not in blobs:
                return self.error(404)
            if self.headers.get("Authorization"):
                return self.error(400, message="the CDN must not receive the hub token")
            name, data = blobs[sha]
            if name == args.corrupt:
                mid = len(data) // 2
                data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
            start = 0
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[len("bytes="):-1])
            if start >= len(data):
                return self.error(416)
            if name == args.cut_then_refuse and name in dropped:  # no answer at all
                self.record(0)
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.record(206 if start else 200)
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
            self.end_headers()
            if name in (args.drop_once, args.cut_then_refuse) and name not in dropped:
                dropped.add(name)
                self.wfile.write(data[start:start + (len(data) - start) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(data[start:])

        def handle_repo(self):
            path = urlsplit(self.path).path
            if path.startswith("/cdn/"):
                return self.cdn(path)
            if args.renamed:
                for prefix in ("/api/models/", "/"):
                    if path.startswith(prefix + args.renamed + "/"):
                        self.record(307)
                        self.send_response(307)
                        self.send_header("Location", prefix + args.repo + path[len(prefix + args.renamed):])
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
            api = "/api/models/" + args.repo + "/revision/"
            resolve = "/" + args.repo + "/resolve/"
            if path.startswith(api):
                if not self.authorized():
                    return
                rev = unquote(path[len(api):])
                if rev not in tags:
                    return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
                body = json.dumps({"id": args.repo, "sha": tags[rev],
                                   "siblings": [{"rfilename": n} for n in sorted(files) + ([args.ghost] if args.ghost else [])]}).encode()
                return self.answer(200, {"Content-Type": "application/json"}, body)
            if path.startswith(resolve):
                if not self.authorized():
                    return
                rev, _, name = path[len(resolve):].partition("/")
                rev, name = unquote(rev), unquote(name)
                if rev not in tags:
                    return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
                if name not in files:
                    return self.error(404, "EntryNotFound", "Entry not found")
                data, lfs = files[name]
                headers = {"X-Repo-Commit": tags[rev]}
                if not lfs:
                    headers["ETag"] = '"%s"' % git_blob_sha1(data)
                    return self.answer(200, headers, data)
                sha = hashlib.sha256(data).hexdigest()
                port = self.server.server_address[1]
                headers.update({"ETag": 'W/"%s"' % git_blob_sha1(b"pointer " + sha.encode()),
                                "X-Linked-Etag": '"%s"' % sha, "X-Linked-Size": str(len(data)),
                                "Location": "http://localhost:%d/cdn/%s?X-Amz-Signature=0" % (port, sha)})
                return self.answer(302, headers)
            if path.startswith("/api/models/") or "/resolve/" in path:
                return self.error(404, "RepoNotFound", "Repository not found")
            return self.error(404)

        do_GET = handle_repo
        do_HEAD = handle_repo

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
