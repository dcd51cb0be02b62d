#!/usr/bin/env python3
"""Stand-in for the MCP server images the compose file names (mcp/filesystem,
ghcr.io/github/github-mcp-server, mcp/clickup, mcp/trello, and
@wallacewen/sonarqube-mcp-server run by `npx` in node:20-alpine).

usage: mcpserver.py KIND   (github, trello, sonarqube, clickup, filesystem)

Speaks MCP's JSON-RPC (`tools/list`, `tools/call`) over HTTP on port 8080
(POST /mcp). The tools call the sandbox's simulated upstream APIs with the
credentials from this container's environment, exactly as the real servers
call GitHub, Trello and SonarCloud, so they fail like them (401, a missing
organization) until the container is recreated with a valid token:
- github: GITHUB_PERSONAL_ACCESS_TOKEN; the API at $SANDBOX_UPSTREAM (the
  image's environment, standing for api.github.com);
- trello: TRELLO_API_KEY and TRELLO_TOKEN; $SANDBOX_UPSTREAM for api.trello.com;
- sonarqube: SONARQUBE_TOKEN, SONARQUBE_URL and SONARQUBE_ORG;
- clickup: CLICKUP_API_KEY (answered here: no upstream is simulated);
- filesystem: lists the directories under /data (the compose volume).
"""
import json
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KIND = sys.argv[1] if len(sys.argv) > 1 else ""
TOOLS = {
    "github": ["get_me", "search_repositories"],
    "trello": ["list_boards"],
    "sonarqube": ["search_projects"],
    "clickup": ["get_workspaces"],
    "filesystem": ["list_directory"],
}


class ToolError(Exception):
    pass


def upstream(url, headers=None):
    """GET url; (status, parsed body)."""
    req = urllib.request.Request(url, headers=dict(headers or {}, **{"User-Agent": "sandbox-mcp-" + KIND}))
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None
    except OSError as e:
        raise ToolError(f"cannot reach {url.split('?')[0]}: {e}")


def message(body):
    if isinstance(body, dict):
        if body.get("errors"):
            return body["errors"][0].get("msg", "")
        return body.get("message", "")
    return ""


def call(tool, args):
    env = os.environ
    if KIND == "github":
        base = env.get("SANDBOX_UPSTREAM", "https://api.github.com")
        status, body = upstream(base + "/user", {"Authorization": "Bearer " + env.get("GITHUB_PERSONAL_ACCESS_TOKEN", "")})
        if status != 200:
            raise ToolError(f"GET /user: {status} {message(body)}")
        if tool == "get_me":
            return body
        return {"total_count": 0, "items": [], "query": args.get("query", "")}
    if KIND == "trello":
        base = env.get("SANDBOX_UPSTREAM", "https://api.trello.com")
        q = urllib.parse.urlencode({"key": env.get("TRELLO_API_KEY", ""), "token": env.get("TRELLO_TOKEN", ""), "fields": "name,url"})
        status, body = upstream(f"{base}/1/members/me/boards?{q}")
        if status != 200:
            raise ToolError(f"GET /1/members/me/boards: {status} {message(body)}")
        return body
    if KIND == "sonarqube":
        url = env.get("SONARQUBE_URL", "").rstrip("/")
        if not url:
            raise ToolError("SONARQUBE_URL is not set")
        # SonarCloud answers 400 "Parameter 'organization' is missing" without SONARQUBE_ORG.
        q = urllib.parse.urlencode({"organization": env.get("SONARQUBE_ORG", "")})
        status, body = upstream(f"{url}/api/projects/search?{q}", {"Authorization": "Bearer " + env.get("SONARQUBE_TOKEN", "")})
        if status != 200:
            raise ToolError(f"GET /api/projects/search: {status} {message(body)}")
        return body
    if KIND == "clickup":
        if not env.get("CLICKUP_API_KEY"):
            raise ToolError("401 Oauth token not found")
        return {"teams": [{"id": "9012345", "name": "Lukas's workspace"}]}
    if KIND == "filesystem":
        path = os.path.normpath(args.get("path") or "/data")
        if path != "/data" and not path.startswith("/data/"):
            raise ToolError(f"access denied: {path} is outside /data")
        try:
            return {"path": path, "entries": sorted(os.listdir(path))}
        except OSError as e:
            raise ToolError(str(e))
    raise ToolError(f"unknown server kind {KIND}")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send(200 if self.path == "/health" else 404, {"status": "ok"} if self.path == "/health" else {})

    def do_POST(self):
        if self.path != "/mcp":
            return self.send(404, {})
        try:
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except ValueError:
            return self.send(400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
        rid, method, params = req.get("id"), req.get("method"), req.get("params") or {}
        if method == "tools/list":
            tools = [{"name": t, "description": f"{KIND} {t}", "inputSchema": {"type": "object"}} for t in TOOLS.get(KIND, [])]
            return self.send(200, {"jsonrpc": "2.0", "id": rid, "result": {"tools": tools}})
        if method == "tools/call":
            name = params.get("name")
            if name not in TOOLS.get(KIND, []):
                return self.send(200, {"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": f"unknown tool {name}"}})
            try:
                data = call(name, params.get("arguments") or {})
                result = {"content": [{"type": "text", "text": json.dumps(data)}], "structuredContent": data, "isError": False}
            except ToolError as e:
                result = {"content": [{"type": "text", "text": str(e)}], "isError": True}
            return self.send(200, {"jsonrpc": "2.0", "id": rid, "result": result})
        return self.send(200, {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no method {method}"}})


def main():
    if KIND not in TOOLS:
        sys.exit(f"usage: mcpserver.py {{{','.join(TOOLS)}}}")
    # PID 1 in its container: stop at once on `docker stop`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"mcp {KIND} server on :8080", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()


if __name__ == "__main__":
    main()
