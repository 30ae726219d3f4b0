# mst: minimum spanning tree (Kruskal with union-find) of a generated
# Barabási–Albert graph with random edge weights (the artifact's networkx
# mst benchmark, standard library only). Query: size (nodes, default 2500),
# mutability, seed.
import json
import os
import random
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

BASE_NODES = 2500
EDGES_PER_NODE = 4


def find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]  # path halving
        x = parent[x]
    return x


def handle(query):
    n, rng = input_size(query, int(query.get("size", [BASE_NODES])[0]))
    n = max(n, EDGES_PER_NODE + 1)
    adj = barabasi_albert(n, EDGES_PER_NODE, rng)
    edges = [(rng.random(), u, v) for u in range(n) for v in adj[u] if u < v]
    edges.sort()
    parent = list(range(n))
    total = 0.0
    used = 0
    for w, u, v in edges:
        ru, rv = find(parent, u), find(parent, v)
        if ru != rv:
            parent[ru] = rv
            total += w
            used += 1
            if used == n - 1:
                break
    return {"nodes": n, "edges": len(edges), "tree_edges": used, "weight": round(total, 6)}


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
