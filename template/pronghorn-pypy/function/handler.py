# Your function. handle(event, context) gets the call (event.method, .path,
# .query, .headers, .body as bytes) and returns a dict with statusCode, body
# and headers, or just the body. Anything kept at module level lives as long
# as the worker, and a worker restored from a snapshot starts with it: here
# a call counter that goes on from where the snapshot was taken.
import json
import os

count = 0


def handle(event, context):
    global count
    count += 1
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"count": count, "pid": os.getpid(), "runtime": "pypy", "received": len(event.body)}),
    }
