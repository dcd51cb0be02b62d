#!/usr/bin/env python3
"""The sandbox's simulated mcp-proxy. It behaves according to what was
deployed, never echoing success:

- it listens on the server only when the compose file maps 8000:8000, on the
  host ip the mapping names (every interface when it names none);
- each MCP server's tools appear only when the deployed tenants.py has the
  auto-enable logic and the server's key is in mcp-proxy's environment (and
  its container exists); otherwise (old tenants.py) every server appears;
- tool calls go to the server's container with the environment the container
  was created with, and on to the simulated upstreams, which fail with 401 or
  a missing-org error until they accept the token;
- an Open WebUI session JWT (HS256) is honoured only when API_GATEWAY_MODE is
  false and the token verifies with mcp-proxy's WEBUI_SECRET_KEY; groups come
  from the DB only when the deployed db.py has get_user_groups().
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

from jsonhttp import JsonHandler

STATE = os.environ["SANDBOX_STATE"]

# server -> (keys that enable it, container service, tools)
SERVERS = {
    "github": (["GITHUB_TOKEN"], "mcp-github", ["get_me", "search_repositories"]),
    "trello": (["TRELLO_API_KEY", "TRELLO_API_TOKEN"], "mcp-trello", ["list_boards"]),
    "sonarqube": (["SONARQUBE_TOKEN"], "mcp-sonarqube", ["search_projects"]),
    "clickup": (["CLICKUP_API_KEY"], "mcp-clickup", ["get_workspaces"]),
    "filesystem": ([], "mcp-filesystem", ["list_directory"]),
    "excel": ([], "mcp-excel", ["create_excel"]),
    "dashboard": ([], "mcp-dashboard", ["create_dashboard"]),
    "linear": (["LINEAR_API_KEY"], "mcp-linear", ["list_issues"]),
    "notion": (["NOTION_API_KEY"], "mcp-notion", ["search"]),
    "hubspot": (["HUBSPOT_ACCESS_TOKEN"], "mcp-hubspot", ["list_contacts"]),
    "pulumi": (["PULUMI_ACCESS_TOKEN"], "mcp-pulumi", ["list_stacks"]),
    "gitlab": (["GITLAB_TOKEN"], "mcp-gitlab", ["list_projects"]),
    "sentry": (["SENTRY_AUTH_TOKEN"], "mcp-sentry", ["list_issues"]),
    "github-remote": (["GITHUB_REMOTE_MCP_URL"], "mcp-github-remote", ["get_me"]),
    "asana": (["ASANA_TOKEN"], "mcpo-sse", ["list_tasks"]),
}


def container(service):
    try:
        with open(os.path.join(STATE, "containers", service + ".json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def image_file(service, rel):
    try:
        with open(os.path.join(STATE, "images", service, rel)) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def upstream():
    with open(os.path.join(STATE, "upstream.url")) as f:
        return f.read().strip()


def call(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Proxy:
    def __init__(self):
        self.refresh()

    def refresh(self):
        me = container("mcp-proxy") or {"environment": {}}
        self.env = me["environment"]
        self.auto_enable = "enabled=bool(os.getenv(" in image_file("mcp-proxy", "tenants.py")
        self.enabled = []
        for name, (keys, service, _) in SERVERS.items():
            if not self.auto_enable or all(self.env.get(k) for k in keys):
                self.enabled.append(name)

    def openapi(self):
        paths = {}
        for name in self.enabled:
            for tool in SERVERS[name][2]:
                paths[f"/{name}/{tool}"] = {"post": {"summary": f"{name} {tool}"}}
        return {"openapi": "3.1.0", "info": {"title": "mcp-proxy (sandbox)"}, "paths": paths}

    def tool(self, name, tool, body):
        if name not in self.enabled or tool not in SERVERS[name][2]:
            return 404, {"detail": "Not Found"}
        if os.path.exists(os.path.join(STATE, "proxy-wrong-bodies")) and name in ("github", "trello"):
            # Tests: the tool answers 200 without the data (e.g. an MCP error
            # wrapped in a success); the verifications must look at the body.
            return 200, {"content": [], "isError": True}
        keys, service, _ = SERVERS[name]
        c = container(service)
        if c is None:
            return 500, {"detail": f"{service} is unreachable: no such container"}
        env = c["environment"]
        base = upstream()
        if name == "github":
            status, data = call(base + "/user", {"Authorization": "Bearer " + env.get("GITHUB_PERSONAL_ACCESS_TOKEN", "")})
            return (200, data) if status == 200 else (500, {"detail": f"upstream {status}: {data.get('message')}"})
        if name == "trello":
            q = f"?key={env.get('TRELLO_API_KEY', '')}&token={env.get('TRELLO_TOKEN', '')}"
            status, data = call(base + "/1/members/me/boards" + q + "&fields=name,url")
            return (200, data) if status == 200 else (500, {"detail": f"upstream {status}: {data.get('message')}"})
        if name == "sonarqube":
            org = env.get("SONARQUBE_ORG", "")
            if not env.get("SONARQUBE_URL"):
                return 500, {"detail": "SONARQUBE_URL is not set"}
            if not org:
                return 500, {"detail": "SonarCloud needs SONARQUBE_ORG"}
            status, data = call(base + "/api/projects/search?organization=" + org, {"Authorization": "Bearer " + env.get("SONARQUBE_TOKEN", "")})
            if status == 200:
                return 200, data
            return 400, {"error": data["errors"][0]["msg"] if data and data.get("errors") else f"upstream {status}"}
        if name == "clickup":
            return (200, {"teams": [{"name": "Lukas's workspace"}]}) if env.get("CLICKUP_API_KEY") else (500, {"detail": "no key"})
        if name == "filesystem":
            return 200, {"entries": ["reports", "exports"]}
        if name == "excel":
            return 200, {"file": "/data/" + (body or {}).get("filename", "book.xlsx")}
        if name == "dashboard":
            return 200, {"url": "/dashboards/" + (body or {}).get("title", "dashboard")}
        return 500, {"detail": f"{name}: not supported here"}

    def whoami(self, headers):
        anonymous = {"anonymous": True, "user_id": None, "email": None, "groups": []}
        if self.env.get("API_GATEWAY_MODE", "").lower() != "false":
            email = headers.get("X-User-Email")
            return {"anonymous": not email, "user_id": None, "email": email, "groups": []}
        auth = headers.get("Authorization", "")
        key = self.env.get("WEBUI_SECRET_KEY", "")
        if not auth.startswith("Bearer ") or not key:
            return anonymous
        token = auth[len("Bearer "):]
        try:
            head, payload, sig = token.split(".")
            want = hmac.new(key.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
            got = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
            if not hmac.compare_digest(want, got):
                return anonymous
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except Exception:
            return anonymous
        with open(os.path.join(STATE, "users.json")) as f:
            users = json.load(f)
        user = users.get(claims.get("id"))
        if not user:
            return anonymous
        groups = user["groups"] if "def get_user_groups" in image_file("mcp-proxy", "db.py") else []
        return {"anonymous": False, "user_id": claims["id"], "email": user["email"], "groups": groups}


class Handler(JsonHandler):
    proxy = None

    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, {"status": "ok"})
        if self.path == "/openapi.json":
            return self.reply(200, self.proxy.openapi())
        if self.path == "/auth/whoami":
            return self.reply(200, self.proxy.whoami(self.headers))
        return self.reply(404, {"detail": "Not Found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if self.path == "/refresh":
            self.proxy.refresh()
            return self.reply(200, {"servers": self.proxy.enabled})
        parts = self.path.strip("/").split("/")
        if len(parts) == 2:
            status, data = self.proxy.tool(parts[0], parts[1], body)
            return self.reply(status, data)
        return self.reply(404, {"detail": "Not Found"})


def main():
    Handler.proxy = Proxy()
    # proxy.py PORT [BIND]: BIND is the host ip the compose file publishes
    # port 8000 on (0.0.0.0 when it names none, as with Docker).
    bind = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    ThreadingHTTPServer((bind, int(sys.argv[1])), Handler).serve_forever()


if __name__ == "__main__":
    main()
