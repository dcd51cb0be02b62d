"""mcp-proxy (sandbox sample): one HTTP API in front of the MCP servers, the
OpenAPI tool server Open WebUI calls.

Environment: WEBUI_SECRET_KEY (verifies Open WebUI session JWTs),
API_GATEWAY_MODE ("true": trust a gateway's X-User-Email header; "false":
identity from the JWT), DATABASE_URL (Open WebUI's Postgres: users, groups),
and each MCP server's key (tenants.py enables a server only when its key is set).

Endpoints (port 8000):
  GET  /health          200 once serving
  GET  /openapi.json    one POST path per tool of each enabled server
  POST /refresh         asks each enabled server for its tools again
  POST /SERVER/TOOL     forwards the JSON body as the tool's arguments (MCP
                        tools/call); 404 for a disabled server, 500 when the
                        server fails or cannot be reached
  GET  /auth/whoami     who the request is: {"anonymous", "user_id", "email",
                        "groups"} (and "access" for ?tenant=NAME)
"""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import db
import tenants

# Where each server's container speaks MCP (JSON-RPC over HTTP), on the compose network.
URLS = {
    "github": "http://mcp-github:8080/mcp",
    "trello": "http://mcp-trello:8080/mcp",
    "sonarqube": "http://mcp-sonarqube:8080/mcp",
    "clickup": "http://mcp-clickup:8080/mcp",
    "filesystem": "http://mcp-filesystem:8080/mcp",
    "excel": "http://mcp-excel:8080/mcp",
    "dashboard": "http://mcp-dashboard:8080/mcp",
    "linear": "http://mcp-linear:8080/mcp",
    "notion": "http://mcp-notion:8080/mcp",
    "hubspot": "http://mcp-hubspot:8080/mcp",
    "pulumi": "http://mcp-pulumi:8080/mcp",
    "gitlab": "http://mcp-gitlab:8080/mcp",
    "sentry": "http://mcp-sentry:8080/mcp",
    "github-remote": "http://mcp-github-remote:8080/mcp",
    "asana": "http://mcpo-sse:8011/mcp",
}
# The tools each server declares; listed even while its container cannot be
# reached (that is what a phantom tool is: enabled, listed, failing).
DECLARED = {
    "github": ["get_me", "search_repositories"], "trello": ["list_boards"],
    "sonarqube": ["search_projects"], "clickup": ["get_workspaces"],
    "filesystem": ["list_directory"], "excel": ["create_excel"], "dashboard": ["create_dashboard"],
    "linear": ["list_issues"], "notion": ["search"], "hubspot": ["list_contacts"],
    "pulumi": ["list_stacks"], "gitlab": ["list_projects"], "sentry": ["list_issues"],
    "github-remote": ["get_me"], "asana": ["list_tasks"],
}


def enabled_servers():
    return [name for name, s in tenants.SERVERS.items() if s.get("enabled") and name in URLS]


def rpc(server, method, params=None, timeout=10):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}).encode()
    req = urllib.request.Request(URLS[server], data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


class Tools:
    def __init__(self):
        self.lock = threading.Lock()
        self.tools = {}

    def refresh(self):
        found = {}

        def ask(name):
            try:
                found[name] = [t["name"] for t in rpc(name, "tools/list", timeout=3)["result"]["tools"]]
            except (OSError, ValueError, KeyError) as e:
                print(f"mcp-proxy: {name}: {e}; listing its declared tools", flush=True)
                found[name] = DECLARED.get(name, [])

        # All at once: a server without a container costs a DNS timeout.
        threads = [threading.Thread(target=ask, args=(n,)) for n in enabled_servers()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with self.lock:
            self.tools = {n: found[n] for n in enabled_servers()}
        return self.tools


TOOLS = Tools()


def b64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify_jwt(token, key):
    """The claims of an HS256 JWT signed with key, or None."""
    try:
        head, payload, sig = token.split(".")
        if json.loads(b64(head)).get("alg") != "HS256":
            return None
        want = hmac.new(key.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, b64(sig)):
            return None
        claims = json.loads(b64(payload))
    except (ValueError, TypeError):
        return None
    if not isinstance(claims, dict) or ("exp" in claims and float(claims["exp"]) < time.time()):
        return None
    return claims


async def identify(headers):
    """(user_id, email) of the request, or (None, None)."""
    if os.getenv("API_GATEWAY_MODE", "false").lower() == "true":
        return None, headers.get("X-User-Email") or None
    auth = headers.get("Authorization", "")
    key = os.getenv("WEBUI_SECRET_KEY", "")
    if not auth.startswith("Bearer ") or not key:
        return None, None
    claims = verify_jwt(auth[len("Bearer "):], key)
    if not claims or not claims.get("id"):
        return None, None
    return claims["id"], await db.get_user_email(claims["id"])


async def whoami(headers, query):
    user_id, email = await identify(headers)
    if not email:
        return {"anonymous": True, "user_id": None, "email": None, "groups": []}
    get_groups = getattr(db, "get_user_groups", None)
    out = {"anonymous": False, "user_id": user_id, "email": email,
           "groups": await get_groups(email) if get_groups else []}
    tenant = query.get("tenant")
    access = getattr(tenants, "user_has_tenant_access_async", None)
    if tenant and access:
        out["access"] = await access(email, tenant)
    return out


def call_tool(server, tool, args):
    with TOOLS.lock:
        listed = TOOLS.tools.get(server)
    if server not in enabled_servers() or tool not in (listed or DECLARED.get(server, [])):
        return 404, {"detail": "Not Found"}
    try:
        reply = rpc(server, "tools/call", {"name": tool, "arguments": args})
    except (OSError, ValueError) as e:
        return 500, {"detail": f"{server}: {URLS[server]} is unreachable: {e}"}
    if "error" in reply:
        return 500, {"detail": f"{server}: {reply['error'].get('message')}"}
    result = reply.get("result") or {}
    if result.get("isError"):
        text = " ".join(c.get("text", "") for c in result.get("content", []))
        return 500, {"detail": f"{server}/{tool} failed: {text}"}
    return 200, result.get("structuredContent", result.get("content"))


def openapi():
    with TOOLS.lock:
        tools = dict(TOOLS.tools)
    paths = {f"/{s}/{t}": {"post": {"summary": f"{s} {t}", "operationId": f"{s}_{t}"}}
             for s, names in tools.items() for t in names}
    return {"openapi": "3.1.0", "info": {"title": "mcp-proxy", "version": "1"}, "paths": paths}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        print("mcp-proxy:", fmt % args, flush=True)

    def send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/health":
            return self.send(200, {"status": "ok"})
        if url.path == "/openapi.json":
            return self.send(200, openapi())
        if url.path == "/auth/whoami":
            query = dict(urllib.parse.parse_qsl(url.query))
            return self.send(200, asyncio.run(whoami(self.headers, query)))
        return self.send(404, {"detail": "Not Found"})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/refresh":
            return self.send(200, {"servers": TOOLS.refresh()})
        try:
            args = json.loads(raw) if raw else {}
        except ValueError:
            return self.send(400, {"detail": "the body is not JSON"})
        parts = self.path.strip("/").split("/")
        if len(parts) == 2:
            return self.send(*call_tool(parts[0], parts[1], args))
        return self.send(404, {"detail": "Not Found"})


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Thread(target=TOOLS.refresh, daemon=True).start()
    print(f"mcp-proxy: servers enabled: {', '.join(enabled_servers())}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()


if __name__ == "__main__":
    main()
