"""Excel creator (sandbox sample): an MCP server (JSON-RPC over HTTP, POST /mcp
on port 8080) with one tool, create_excel {filename, sheets: [{name, rows}]},
which writes a real .xlsx (Office Open XML) under /data/exports."""
import json
import os
import re
import signal
import sys
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

OUT = os.environ.get("EXPORT_DIR", "/data/exports")


def cell(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"<c><v>{value}</v></c>"
    return f'<c t="inlineStr"><is><t>{escape(str(value))}</t></is></c>'


def create_excel(args):
    name = os.path.basename(str(args.get("filename") or "book.xlsx"))
    if not re.fullmatch(r"[A-Za-z0-9._-]+\.xlsx", name):
        raise ValueError(f"bad file name {name!r}: letters, digits, . _ - and .xlsx")
    sheets = args.get("sheets") or [{"name": "Sheet1", "rows": []}]
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                   '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                   '<Default Extension="xml" ContentType="application/xml"/>'
                   '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
                   + "".join(f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>' for i in range(1, len(sheets) + 1))
                   + "</Types>")
        z.writestr("_rels/.rels", f'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                   f'<Relationship Id="r1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        z.writestr("xl/workbook.xml", f'<?xml version="1.0"?><workbook {ns} xmlns:r="{rel}"><sheets>'
                   + "".join(f'<sheet name="{escape(str(s.get("name") or f"Sheet{i}"))}" sheetId="{i}" r:id="r{i}"/>' for i, s in enumerate(sheets, 1))
                   + "</sheets></workbook>")
        z.writestr("xl/_rels/workbook.xml.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                   + "".join(f'<Relationship Id="r{i}" Type="{rel}/worksheet" Target="worksheets/sheet{i}.xml"/>' for i in range(1, len(sheets) + 1))
                   + "</Relationships>")
        for i, s in enumerate(sheets, 1):
            rows = "".join("<row>" + "".join(cell(v) for v in r) + "</row>" for r in s.get("rows") or [])
            z.writestr(f"xl/worksheets/sheet{i}.xml", f'<?xml version="1.0"?><worksheet {ns}><sheetData>{rows}</sheetData></worksheet>')
    return {"file": path, "sheets": len(sheets), "bytes": os.path.getsize(path)}


TOOLS = {"create_excel": create_excel}


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
