# thumbnail: generates an RGB image, down-scales it with a bilinear filter
# and encodes the thumbnail as PNG (the artifact's Pillow thumbnail
# benchmark; pixels in a bytearray, PNG via zlib + struct). Query: size
# (source width in px, default 512; height is 3/4 of it), mutability, seed.
import struct
import tempfile
import zlib
import json
import os
import random
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

BASE_WIDTH = 512
THUMB = 128  # longest side of the thumbnail


def generate(w, h, rng):
    """A gradient with a few discs and some noise: smooth and sharp regions,
    like a photo with objects."""
    img = bytearray(w * h * 3)
    discs = [(rng.randrange(w), rng.randrange(h), rng.randrange(8, max(9, w // 4)),
              rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(6)]
    for y in range(h):
        for x in range(w):
            r, g, b = (x * 255) // w, (y * 255) // h, ((x + y) * 127) // (w + h)
            for cx, cy, rad, dr, dg, db in discs:
                if (x - cx) * (x - cx) + (y - cy) * (y - cy) < rad * rad:
                    r, g, b = dr, dg, db
            i = (y * w + x) * 3
            img[i] = r
            img[i + 1] = g
            img[i + 2] = b
    return img


def bilinear(src, w, h, tw, th):
    dst = bytearray(tw * th * 3)
    sx = (w - 1) / max(1, tw - 1)
    sy = (h - 1) / max(1, th - 1)
    for y in range(th):
        fy = y * sy
        y0 = int(fy)
        y1 = min(y0 + 1, h - 1)
        wy = fy - y0
        for x in range(tw):
            fx = x * sx
            x0 = int(fx)
            x1 = min(x0 + 1, w - 1)
            wx = fx - x0
            a, b = (y0 * w + x0) * 3, (y0 * w + x1) * 3
            c, d = (y1 * w + x0) * 3, (y1 * w + x1) * 3
            o = (y * tw + x) * 3
            for k in range(3):
                top = src[a + k] * (1 - wx) + src[b + k] * wx
                bot = src[c + k] * (1 - wx) + src[d + k] * wx
                dst[o + k] = int(top * (1 - wy) + bot * wy + 0.5)
    return dst


def png(img, w, h):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(img[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def handle(query):
    w, rng = input_size(query, int(query.get("size", [BASE_WIDTH])[0]))
    w = max(w, 16)
    h = max(12, w * 3 // 4)
    src = generate(w, h, rng)
    scale = THUMB / max(w, h)
    tw, th = max(1, int(w * scale)), max(1, int(h * scale))
    data = png(bilinear(src, w, h, tw, th), tw, th)
    # Written out like the original's thumbnail upload, then removed.
    with tempfile.NamedTemporaryFile(prefix="thumb-", suffix=".png") as f:
        f.write(data)
        f.flush()
    return {"source": [w, h], "thumbnail": [tw, th], "png_bytes": len(data)}


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
