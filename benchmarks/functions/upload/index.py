# upload: generates a payload and "uploads" it: streams it in chunks to a
# temp file while hashing it with sha256, then reads it back to verify (the
# artifact's storage-upload benchmark, without a network here). Query: size
# (KiB, default 2048), mutability, seed.
import hashlib
import tempfile
import json
import os
import random
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

BASE_KIB = 2048
CHUNK = 64 * 1024


def make_chunk(rng, size):
    # A cheap seeded generator mixed in Python (an LCG per 8-byte word), so
    # the payload costs interpreter work the JIT can speed up, as the
    # original's payload generation did.
    out = bytearray(size)
    x = rng.getrandbits(64)
    for i in range(0, size, 8):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out[i:i + 8] = x.to_bytes(8, "little")
    return bytes(out[:size])


def handle(query):
    kib, rng = input_size(query, int(query.get("size", [BASE_KIB])[0]))
    total = kib * 1024
    digest = hashlib.sha256()
    fd, path = tempfile.mkstemp(prefix="upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            left = total
            while left > 0:
                chunk = make_chunk(rng, min(CHUNK, left))
                digest.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        check = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                check.update(block)
    finally:
        os.unlink(path)
    if check.hexdigest() != digest.hexdigest():
        raise IOError("read-back checksum mismatch")
    return {"bytes": total, "sha256": digest.hexdigest()}


# --- HTTP plumbing (identical in every PyPy benchmark) ----------------------
# Single process, single thread: the whole runtime state is one process that
# CRIU can checkpoint, and requests are served one at a time as the driver
# sends them.

# Requests this runtime state has served, the current one included. It lives
# in the process's memory, so a worker restored from a snapshot taken at
# request r answers r+1 first: the lineage request number the engine learns
# by, which the evaluation driver records for every request.
served = 0


def worker_token():
    """Tells workers apart for the evaluation driver. The agent is PID 1 of
    every worker's fresh PID namespace and CRIU restores into a fresh time
    namespace, so the agent's start time (field 22 of /proc/1/stat) and the
    time namespace change with every worker, cold or restored, while this
    process's own start time repeats across restores of one snapshot. Read
    after the handler's clock has stopped."""
    try:
        with open("/proc/1/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
        return "%s/%s" % (start, os.readlink("/proc/self/ns/time")[6:-1])
    except (OSError, IndexError):
        return ""


def input_size(query, base):
    """Draws this request's input size from a Gaussian around base with
    relative stddev = mutability (the artifact's knob). A `seed` query
    parameter makes the draw (and the generated input) reproducible per
    request; without it every request gets fresh randomness."""
    mutability = float(query.get("mutability", ["0"])[0] or 0)
    seed = query.get("seed")
    rng = random.Random(int(seed[0])) if seed else random.Random()
    scale = rng.gauss(1.0, mutability) if mutability > 0 else 1.0
    # Clamp so a wild draw can neither vanish the work nor take seconds.
    scale = min(3.0, max(0.1, scale))
    return max(1, int(base * scale)), rng


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        # Drain the body: the connection is kept alive, and unread bytes would
        # be parsed as the next request.
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        query = parse_qs(urlparse(self.path).query)
        start = time.perf_counter()
        try:
            result = handle(query)
            status = 200
        except Exception as e:  # a bad input must not kill the worker
            result = {"error": "%s: %s" % (type(e).__name__, e)}
            status = 500
        result["server_us"] = int((time.perf_counter() - start) * 1e6)
        global served
        served += 1
        result["lineage"] = served
        result["worker"] = worker_token()
        body = json.dumps(result).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


def main():
    url = urlparse(os.environ.get("upstream_url", "http://127.0.0.1:5000"))
    server = HTTPServer((url.hostname or "127.0.0.1", url.port or 5000), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
