"""A fake Docker-API endpoint on a Unix socket, for tests/untrusted_endpoint.rs.

Run as an unprivileged user: python3 fake_docker_api.py SOCKET SPEC STATS
SPEC (JSON, re-read on every request): {"endless": bool, "trickle": bool, "containers":
[{"Id", "Name", "Running", "Pid", "Labels", "UpperDir", "LowerDir"}]}. STATS is rewritten
with how many events connections and container lists were asked for and how many bytes the
endless event object has had so far. "trickle": a container list is sent one byte a second.
"""
import json
import os
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

SOCKET, SPEC, STATS = sys.argv[1:4]
lock = threading.Lock()
stats = {"events_connections": 0, "events_bytes": 0, "lists": 0}


def save():
    tmp = STATS + ".tmp"
    with open(tmp, "w") as f:
        json.dump(stats, f)
    os.replace(tmp, STATS)


cache = {"mtime": None, "spec": None, "by_id": {}, "list": b"[]"}


def spec():
    """The spec, read again when it changed, with an index by id and name and the list's body
    (a junk endpoint of 20,000 containers answers each inspect without a scan)."""
    mtime = os.stat(SPEC).st_mtime_ns
    with lock:
        if cache["mtime"] != mtime:
            with open(SPEC) as f:
                s = json.load(f)
            by_id = {}
            for c in s["containers"]:
                by_id.setdefault(c["Id"], c)
                by_id.setdefault(c["Name"], c)
            out = [{"Id": c["Id"], "Names": ["/" + c["Name"]],
                    "State": "running" if c.get("Running") else "exited"}
                   for c in s["containers"]]
            cache.update(mtime=mtime, spec=s, by_id=by_id, list=json.dumps(out).encode())
        return cache["spec"]


def inspect(c):
    running = c.get("Running", False)
    return {
        "Id": c["Id"],
        "Name": "/" + c["Name"],
        "Created": "2026-11-22T10:05:06Z",
        "State": {
            "Status": "running" if running else "exited",
            "Running": running,
            "Pid": c.get("Pid", 0) if running else 0,
            "ExitCode": 0,
            "FinishedAt": "2026-11-22T11:00:00Z",
        },
        "Config": {"Image": "fake:1", "Labels": c.get("Labels", {})},
        "GraphDriver": {
            "Name": "overlay",
            "Data": {"UpperDir": c.get("UpperDir", ""), "LowerDir": c.get("LowerDir", "")},
        },
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def address_string(self):
        return "unix"

    def reply(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.reply(200, b"", "text/plain")

    def do_GET(self):
        path = self.path.split("?")[0]
        s = spec()
        if path.endswith("/_ping"):
            return self.reply(200, b"OK", "text/plain")
        if path.endswith("/version"):
            v = {"Version": "0-fake", "ApiVersion": "1.41",
                 "Components": [{"Name": "fake", "Version": "0"}]}
            return self.reply(200, json.dumps(v).encode())
        if path.endswith("/containers/json"):
            with lock:
                stats["lists"] += 1
                save()
            if not s.get("trickle"):
                return self.reply(200, cache["list"])
            body = b"[" + b" " * 100000 + b"]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                pass
            return
        if "/containers/" in path and path.endswith("/json"):
            cid = path.split("/containers/", 1)[1][: -len("/json")]
            c = cache["by_id"].get(cid)
            if c is not None:
                return self.reply(200, json.dumps(inspect(c)).encode())
            return self.reply(404, b'{"message": "no such container"}')
        if path.endswith("/events"):
            with lock:
                stats["events_connections"] += 1
                save()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.flush()
            if not s.get("endless"):
                while True:
                    time.sleep(3600)
            # One event object that never ends.
            self.wfile.write(b'{"Type": "container", "Action": "start", "Actor": {"ID": "')
            chunk = b"a" * (1 << 16)
            try:
                while True:
                    self.wfile.write(chunk)
                    with lock:
                        stats["events_bytes"] += len(chunk)
                        if stats["events_bytes"] % (1 << 20) == 0:
                            save()
            except OSError:
                with lock:
                    save()
            return
        self.reply(404, b'{"message": "not faked"}')


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if os.path.exists(SOCKET):
    os.unlink(SOCKET)
save()
Server(SOCKET, Handler).serve_forever()
