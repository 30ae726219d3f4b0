# dynamic-html: renders an HTML page from a template with a loop over
# generated rows (the artifact's jinja2 benchmark). jinja2 is not reachable
# here, so a small engine below compiles {{ a.b }} substitutions (HTML-escaped)
# and {% for x in xs %}...{% endfor %} loops; string.Template renders the
# page frame. Query: size (rows, default 1500), mutability, seed.
import html
import re
import string
import json
import os
import random
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

BASE_ROWS = 1500

FRAME = string.Template("""<!DOCTYPE html>
<html><head><title>$title</title></head>
<body><h1>$title</h1><p>generated at $stamp</p>
$content
</body></html>""")

BODY = """<table>
<tr><th>#</th><th>name</th><th>score</th><th>tags</th></tr>
{% for row in rows %}<tr><td>{{ row.id }}</td><td>{{ row.name }}</td><td>{{ row.score }}</td><td>{% for tag in row.tags %}<span>{{ tag }}</span>{% endfor %}</td></tr>
{% endfor %}</table>
<p>{{ summary }}</p>"""

TOKEN = re.compile(r"({{.*?}}|{%.*?%})")


def compile_template(src):
    """Parses src into a tree: str (literal), ("var", path) or
    ("for", name, path, children)."""
    root = []
    stack = [root]
    for part in TOKEN.split(src):
        if part.startswith("{{"):
            stack[-1].append(("var", part[2:-2].strip().split(".")))
        elif part.startswith("{%"):
            words = part[2:-2].split()
            if words[0] == "for":
                node = ("for", words[1], words[3].split("."), [])
                stack[-1].append(node)
                stack.append(node[3])
            elif words[0] == "endfor":
                stack.pop()
            else:
                raise ValueError("unknown tag %r" % part)
        elif part:
            stack[-1].append(part)
    return root


def lookup(scope, path):
    value = scope[path[0]]
    for key in path[1:]:
        value = value[key]
    return value


def render(nodes, scope, out):
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif node[0] == "var":
            out.append(html.escape(str(lookup(scope, node[1]))))
        else:
            inner = dict(scope)
            for item in lookup(scope, node[2]):
                inner[node[1]] = item
                render(node[3], inner, out)


WORDS = ["alpha", "beta", "gamma", "delta", "<eps>", "zeta", "eta", "theta", "iota", "kappa & co"]


def handle(query):
    n, rng = input_size(query, int(query.get("size", [BASE_ROWS])[0]))
    rows = [{
        "id": i,
        "name": " ".join(rng.choice(WORDS) for _ in range(3)),
        "score": round(rng.random() * 100, 2),
        "tags": [rng.choice(WORDS) for _ in range(rng.randint(1, 4))],
    } for i in range(n)]
    out = []
    render(compile_template(BODY), {"rows": rows, "summary": "%d rows" % n}, out)
    page = FRAME.substitute(title="Report", stamp=time.time(), content="".join(out))
    return {"rows": n, "bytes": len(page)}


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
