"""A webhook receiver for Beckon's tests: every request's signature is checked with the official
Standard Webhooks library (Python), and every request is written, one JSON line each, to the log
named on the command line.

    webhook_receiver.py PORT_FILE LOG SECRET [SECRET...]

The port it listens on (127.0.0.1, chosen by the system) is written to PORT_FILE. What it answers
depends on the path:
    /ok            200
    /plain         200 without a signature (a team chat's incoming webhook)
    /flaky/N       500 for the first N requests of each webhook-id, then 200
    /gone          410
    /throttle/S    429 with Retry-After: S for the first request of each webhook-id, then 200
    /slow/S        sleeps S seconds, then 200
A request whose signature does not verify against any SECRET is answered 401.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

port_file, log_path, *secrets = sys.argv[1:]
hooks = [Webhook(s) for s in secrets]
lock = threading.Lock()
seen = {}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified_by = None
        for i, hook in enumerate(hooks):
            try:
                hook.verify(body, headers)
                verified_by = i
                break
            except Exception:
                pass
        msg_id = headers.get("webhook-id", "")
        with lock:
            n = seen.get(msg_id, 0)
            seen[msg_id] = n + 1
        parts = self.path.strip("/").split("/")
        status, extra = 200, {}
        if parts[0] == "plain":
            status = 200
        elif verified_by is None:
            status = 401
        elif parts[0] == "flaky" and n < int(parts[1]):
            status = 500
        elif parts[0] == "gone":
            status = 410
        elif parts[0] == "throttle" and n == 0:
            status, extra = 429, {"Retry-After": parts[1]}
        elif parts[0] == "slow":
            time.sleep(float(parts[1]))
        record = {
            "path": self.path,
            "id": msg_id,
            "timestamp": headers.get("webhook-timestamp"),
            "signatures": headers.get("webhook-signature", "").split(" "),
            "verified_by": verified_by,
            "status": status,
            "received_at": time.time(),
            "body": body.decode("utf-8", "replace"),
        }
        with lock, open(log_path, "a") as log:
            log.write(json.dumps(record) + "\n")
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("content-length", "0")
        self.end_headers()


class Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connections that arrive together (the kernel then retries
    # them a second later, and again later still), which a real receiver would not do.
    request_queue_size = 256
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os

os.replace(port_file + ".tmp", port_file)
server.serve_forever()
