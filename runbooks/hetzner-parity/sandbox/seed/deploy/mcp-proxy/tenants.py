"""Tenants (old version: every server enabled)."""
SERVERS = {name: {"enabled": True} for name in [
    "github", "trello", "sonarqube", "clickup", "filesystem", "excel", "dashboard",
    "linear", "notion", "hubspot", "pulumi", "gitlab", "sentry", "github-remote", "asana"]}
