"""Dashboard (sandbox sample): an MCP server (JSON-RPC over HTTP, POST /mcp on
port 8080) with one tool, create_dashboard {title, widgets: [{title, value}]},
which writes an HTML page under /data/dashboards."""
import html
import json
import os
import re
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OUT = os.environ.get("DASHBOARD_DIR", "/data/dashboards")


def create_dashboard(args):
    title = str(args.get("title") or "dashboard")
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "dashboard"
    widgets = args.get("widgets") or []
    cards = "".join(
        f"<section><h2>{html.escape(str(w.get('title', '')))}</h2><p>{html.escape(str(w.get('value', '')))}</p></section>"
        for w in widgets if isinstance(w, dict)
    )
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, slug + ".html")
    with open(path, "w") as f:
        f.write(f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>{cards}\n")
    return {"url": f"/dashboards/{slug}.html", "file": path, "widgets": len(widgets)}


TOOLS = {"create_dashboard": create_dashboard}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        try:
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except ValueError:
            return self.send({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
        rid, params = req.get("id"), req.get("params") or {}
        if req.get("method") == "tools/list":
            return self.send({"jsonrpc": "2.0", "id": rid, "result": {"tools": [{"name": t, "inputSchema": {"type": "object"}} for t in TOOLS]}})
        if req.get("method") == "tools/call" and params.get("name") in TOOLS:
            try:
                data = TOOLS[params["name"]](params.get("arguments") or {})
                result = {"content": [{"type": "text", "text": json.dumps(data)}], "structuredContent": data, "isError": False}
            except (ValueError, OSError) as e:
                result = {"content": [{"type": "text", "text": str(e)}], "isError": True}
            return self.send({"jsonrpc": "2.0", "id": rid, "result": result})
        return self.send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "no such method or tool"}})


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
