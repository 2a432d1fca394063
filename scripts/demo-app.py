#!/usr/bin/env python3
"""The demo's app: what a Dapr app behind daprd sees of an input binding.

Answers `OPTIONS /<binding>` (the subscription check daprd makes), prints each delivery
daprd POSTs as one JSON line (body and the rocketmq-* / trace headers), and answers every
second delivery with HTTP 500, so the binding hands it back to the broker for redelivery.

    python3 scripts/demo-app.py PORT BINDING
"""

import http.server
import json
import sys
import threading

port, binding = int(sys.argv[1]), sys.argv[2]
count = 0
lock = threading.Lock()


class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code: int, body: bytes = b""):
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self):
        self.reply(200 if self.path == f"/{binding}" else 404)

    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            count += 1
            n = count
        ok = n % 2 == 1
        meta = {k.lower(): v for k, v in self.headers.items()
                if k.lower().startswith("rocketmq-") or k.lower() == "traceparent"}
        print(json.dumps({"delivery": n, "body": body.decode(errors="replace"), "app_answer":
                          200 if ok else 500, "metadata": dict(sorted(meta.items()))}), flush=True)
        self.reply(200 if ok else 500, b"{}")


http.server.ThreadingHTTPServer(("127.0.0.1", port), App).serve_forever()
