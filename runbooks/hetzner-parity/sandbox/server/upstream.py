#!/usr/bin/env python3
"""Simulated upstream APIs for the sandbox: GitHub (/user), Trello
(/1/members/me, /1/members/me/boards), SonarCloud (/api/organizations/search,
/api/projects/search). A token is accepted only when it is listed in the
valid-tokens file; everything else fails like the real services do."""
import hashlib
import json
import os
import sys
from http.server import ThreadingHTTPServer

from jsonhttp import JsonHandler
from urllib.parse import parse_qs, urlparse


def load_valid(path):
    valid = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                valid[k] = v
    return valid


# Shaped like the real answers (fields trimmed).
GITHUB_USER = {
    "login": "lukas", "id": 5123456, "node_id": "MDQ6VXNlcjUxMjM0NTY=", "type": "User",
    "site_admin": False, "name": "Lukas", "company": None, "html_url": "https://github.com/lukas",
}
TRELLO_BOARDS = [
    {"id": "5f2b8c1e9a0d4b3c2a1e0f01", "name": "Roadmap", "closed": False, "url": "https://trello.com/b/AbCd1234/roadmap"},
    {"id": "5f2b8c1e9a0d4b3c2a1e0f02", "name": "Support", "closed": False, "url": "https://trello.com/b/EfGh5678/support"},
]
TRELLO_MEMBER = {
    "id": "5a1b2c3d4e5f60718293a4b5", "username": "lukas", "fullName": "Lukas",
    "idBoards": [b["id"] for b in TRELLO_BOARDS],
}


def record(state, name, value):
    """Tests: the SHA-256 of each value a token check (not an MCP container)
    sent, appended to upstream/checked.sha256 as `NAME HEX`, to compare with
    what Compose handed the containers (never the value itself)."""
    if value is None:
        return
    with open(os.path.join(state, "checked.sha256"), "a") as f:
        f.write(f"{name} {hashlib.sha256(value.encode()).hexdigest()}\n")


class Handler(JsonHandler):
    valid_path = ""

    def bearer(self):
        auth = self.headers.get("Authorization", "")
        for prefix in ("Bearer ", "token "):
            if auth.startswith(prefix):
                return auth[len(prefix):]
        return ""

    def do_GET(self):
        valid = load_valid(self.valid_path)
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        state = os.path.dirname(self.valid_path)
        wrong = os.path.exists(os.path.join(state, "wrong-bodies"))
        # Tests: only the MCP server containers (their User-Agent) get the wrong bodies.
        if self.headers.get("User-Agent", "").startswith("sandbox-mcp-"):
            wrong = wrong or os.path.exists(os.path.join(state, "wrong-bodies-for-mcp"))
        if not self.headers.get("User-Agent", "").startswith("sandbox-mcp-"):
            if url.path == "/user":
                record(state, "GITHUB_TOKEN", self.bearer())
            elif url.path.startswith("/1/members/me"):
                record(state, "TRELLO_API_KEY", q.get("key"))
                record(state, "TRELLO_API_TOKEN", q.get("token"))
            elif url.path.startswith("/api/"):
                record(state, "SONARQUBE_TOKEN", self.bearer())
                record(state, "SONARQUBE_ORG", q.get("organizations") or q.get("organization"))
        if wrong and url.path in ("/user", "/1/members/me", "/1/members/me/boards"):
            # Tests: a 200 that is not the API's answer (a captive portal, a
            # misrouted proxy); the checks must look at the body.
            return self.reply(200, {"status": "ok"})
        if url.path == "/user":
            if self.bearer() and self.bearer() == valid.get("GITHUB_TOKEN"):
                return self.reply(200, GITHUB_USER)
            return self.reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        if url.path in ("/1/members/me", "/1/members/me/boards"):
            if q.get("key") != valid.get("TRELLO_API_KEY"):
                return self.reply(401, {"message": "invalid key"})
            if q.get("token") != valid.get("TRELLO_API_TOKEN"):
                return self.reply(401, {"message": "invalid token"})
            if url.path.endswith("boards"):
                fields = q.get("fields", "all")
                boards = TRELLO_BOARDS if fields == "all" else [
                    {k: v for k, v in b.items() if k == "id" or k in fields.split(",")} for b in TRELLO_BOARDS
                ]
                return self.reply(200, boards)
            return self.reply(200, TRELLO_MEMBER)
        if url.path in ("/api/organizations/search", "/api/projects/search"):
            if self.bearer() != valid.get("SONARQUBE_TOKEN"):
                return self.reply(401, {"errors": [{"msg": "Not authorized. Please check your token."}]})
            org = q.get("organizations") or q.get("organization")
            if not org:
                return self.reply(400, {"errors": [{"msg": "Parameter 'organization' is missing"}]})
            if org != valid.get("SONARQUBE_ORG"):
                return self.reply(404, {"errors": [{"msg": f"No organization with key '{org}'"}]})
            if url.path == "/api/organizations/search":
                return self.reply(200, {"organizations": [{"key": org, "name": org}]})
            return self.reply(200, {"components": [{"key": f"{org}_mcp-proxy", "name": "mcp-proxy"}]})
        return self.reply(404, {"message": "Not Found"})


def main():
    # upstream.py PORT_FILE VALID_TOKENS [BIND]: listens on a free port and
    # writes it to PORT_FILE (no race with other sandboxes for the port).
    port_file, valid = sys.argv[1], sys.argv[2]
    bind = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    Handler.valid_path = valid
    server = ThreadingHTTPServer((bind, 0), Handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
