# Pronghorn's PyPy template: the HTTP server around function/handler.py.
# Pronghorn's agent starts it (the template's fprocess) or restores it from a
# snapshot, and sends it each call on the address in upstream_url (default
# http://127.0.0.1:5000), as of-watchdog's http mode does. Standard library
# only. Module-level state in the handler survives across calls and, in a
# restored worker, across snapshots.
import os
import sys
import traceback
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlparse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "function"))
import handler  # noqa: E402  (function/handler.py)


class Event:
    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body


class Context:
    def __init__(self):
        self.hostname = os.getenv("HOSTNAME", "localhost")


def read_body(req):
    # The OpenFaaS gateway forwards bodies chunked; http.server does not
    # decode that, and unread bytes would be parsed as the next request on
    # the kept-alive connection.
    if "chunked" in req.headers.get("Transfer-Encoding", "").lower():
        out = bytearray()
        while True:
            size = int(req.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while req.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(out)
            out += req.rfile.read(size)
            req.rfile.readline()  # the CRLF after each chunk
    length = int(req.headers.get("Content-Length") or 0)
    return req.rfile.read(length) if length else b""


class Server(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one write, without Nagle's delay: written
    # apart, the body waits for the agent's delayed ACK (~40 ms a call).
    wbufsize = -1
    disable_nagle_algorithm = True

    def handle_any(self):
        body = read_body(self)
        url = urlparse(self.path)
        event = Event(self.command, url.path, url.query, dict(self.headers), body)
        try:
            res = handler.handle(event, Context())
        except Exception:
            traceback.print_exc()
            res = {"statusCode": 500, "body": "handler failed\n"}
        if not isinstance(res, dict):
            res = {"body": res}
        out = res.get("body", b"")
        if isinstance(out, str):
            out = out.encode()
        self.send_response(int(res.get("statusCode", 200)))
        headers = res.get("headers") or {}
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "text/plain; charset=utf-8"
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    def log_message(self, fmt, *args):
        pass  # one line per call would flood the function's log


def main():
    u = urlparse(os.getenv("upstream_url", "http://127.0.0.1:5000"))
    HTTPServer((u.hostname or "127.0.0.1", u.port or 5000), Server).serve_forever()


if __name__ == "__main__":
    main()
