print("mcp-proxy")
