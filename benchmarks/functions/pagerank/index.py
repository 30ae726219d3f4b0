# pagerank: PageRank by power iteration on a generated Barabási–Albert graph
# (the artifact's networkx pagerank benchmark, standard library only).
# Query: size (nodes, default 3000), mutability, seed.
import json
import os
import random
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

BASE_NODES = 3000
EDGES_PER_NODE = 4
DAMPING = 0.85
ITERATIONS = 20


def handle(query):
    n, rng = input_size(query, int(query.get("size", [BASE_NODES])[0]))
    n = max(n, EDGES_PER_NODE + 1)
    adj = barabasi_albert(n, EDGES_PER_NODE, rng)
    rank = [1.0 / n] * n
    base = (1.0 - DAMPING) / n
    for _ in range(ITERATIONS):
        nxt = [base] * n
        for u in range(n):
            share = DAMPING * rank[u] / len(adj[u])
            for v in adj[u]:
                nxt[v] += share
        rank = nxt
    top = max(range(n), key=lambda i: rank[i])
    return {"nodes": n, "top": top, "top_rank": round(rank[top], 8)}


def barabasi_albert(n, m, rng):
    """Barabási–Albert preferential attachment (as networkx's
    barabasi_albert_graph): every new node links to m distinct existing
    nodes chosen with probability proportional to their degree. Returns
    adjacency lists."""
    adj = [[] for _ in range(n)]
    targets = list(range(m))
    repeated = []  # every node once per incident edge: degree-weighted sampling
    for source in range(m, n):
        for t in targets:
            adj[source].append(t)
            adj[t].append(source)
        repeated.extend(targets)
        repeated.extend([source] * m)
        chosen = set()
        while len(chosen) < m:
            chosen.add(repeated[rng.randrange(len(repeated))])
        targets = list(chosen)
    return adj


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
