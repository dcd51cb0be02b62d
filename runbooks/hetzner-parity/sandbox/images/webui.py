#!/usr/bin/env python3
"""Stand-in for the ghcr.io/open-webui/open-webui:main image: a web server on
port 8080 that, like Open WebUI, owns the user and group tables in Postgres
(DATABASE_URL). On start it creates them and adds the sandbox's users
(/opt/sandbox/users.json: id -> email and groups), so that mcp-proxy finds
the user of a session JWT, with their groups, in the real database.
Refuses to start without WEBUI_SECRET_KEY (the key that signs session JWTs)."""
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2


def seed(url):
    with open("/opt/sandbox/users.json") as f:
        users = json.load(f)
    for attempt in range(120):
        try:
            conn = psycopg2.connect(url, connect_timeout=3)
            break
        except psycopg2.OperationalError as e:
            if attempt == 119:
                raise
            print(f"open-webui: waiting for the database: {str(e).strip()}", flush=True)
            time.sleep(1)
    with conn, conn.cursor() as cur:
        cur.execute('CREATE TABLE IF NOT EXISTS "user" (id TEXT PRIMARY KEY, name TEXT, email TEXT NOT NULL, role TEXT)')
        cur.execute('CREATE TABLE IF NOT EXISTS "group" (id TEXT PRIMARY KEY, name TEXT NOT NULL, user_ids JSON)')
        groups = {}
        for uid, u in users.items():
            cur.execute('INSERT INTO "user" (id, name, email, role) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING',
                        (uid, u["email"].split("@")[0], u["email"], "user"))
            for g in u.get("groups", []):
                groups.setdefault(g, []).append(uid)
        for name, ids in groups.items():
            cur.execute('INSERT INTO "group" (id, name, user_ids) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING',
                        ("group-" + name, name, json.dumps(ids)))
    conn.close()
    print(f"open-webui: {len(users)} users, {len(groups)} groups in the database", flush=True)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        ok = self.path in ("/health", "/api/config")
        data = json.dumps({"status": True, "name": "Open WebUI (sandbox)"} if ok else {"detail": "Not Found"}).encode()
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if not os.environ.get("WEBUI_SECRET_KEY"):
        sys.exit("open-webui: WEBUI_SECRET_KEY is empty")
    seed(os.environ["DATABASE_URL"])
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()


if __name__ == "__main__":
    main()
