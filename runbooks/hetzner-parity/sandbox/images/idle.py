#!/usr/bin/env python3
"""Stand-in for node:20-alpine's default command: a service that stays up and
answers GET /health on port 3000 (auth-service, admin-portal are built FROM
node:20-alpine without a command of their own)."""
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
ThreadingHTTPServer(("0.0.0.0", 3000), Handler).serve_forever()
