# Counter function for snapshot tests: every request increments an in-memory
# counter, so a restored process visibly continues where its snapshot left off.
# Standard library only (no PyPI here). Each request does a little numeric work
# so PyPy's JIT has a hot loop to warm up.
import json
import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlparse

count = 0


def work(n):
    # A small sieve: hot loop, allocation, list indexing - typical JIT fodder.
    sieve = [True] * n
    primes = 0
    for i in range(2, n):
        if sieve[i]:
            primes += 1
            for j in range(i * i, n, i):
                sieve[j] = False
    return primes


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        global count
        # Drain the body: the connection is kept alive, and unread bytes would
        # be parsed as the next request.
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        count += 1
        start = time.perf_counter()
        primes = work(20000)
        body = json.dumps({
            "count": count,
            "pid": os.getpid(),
            "primes": primes,
            "server_us": int((time.perf_counter() - start) * 1e6),
        }).encode()
        self.send_response(200)
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
