"""Tenants: a server is enabled only when its API key is configured (FR-6),
and a user reaches a tenant when they are in the group of that name."""
import os


def _keys(*names):
    return all(os.getenv(n) for n in names)


SERVERS = {
    "github": {"enabled": _keys("GITHUB_TOKEN")},
    "trello": {"enabled": _keys("TRELLO_API_KEY", "TRELLO_API_TOKEN")},
    "sonarqube": {"enabled": _keys("SONARQUBE_TOKEN")},
    "clickup": {"enabled": _keys("CLICKUP_API_KEY")},
    "filesystem": {"enabled": True},
    "excel": {"enabled": True},
    "dashboard": {"enabled": True},
    "linear": dict(enabled=bool(os.getenv("LINEAR_API_KEY"))),
    "notion": dict(enabled=bool(os.getenv("NOTION_API_KEY"))),
    "hubspot": dict(enabled=bool(os.getenv("HUBSPOT_ACCESS_TOKEN"))),
    "pulumi": dict(enabled=bool(os.getenv("PULUMI_ACCESS_TOKEN"))),
    "gitlab": dict(enabled=bool(os.getenv("GITLAB_TOKEN"))),
    "sentry": dict(enabled=bool(os.getenv("SENTRY_AUTH_TOKEN"))),
    "github-remote": dict(enabled=bool(os.getenv("GITHUB_REMOTE_MCP_URL"))),
    "asana": dict(enabled=bool(os.getenv("ASANA_TOKEN"))),
}


async def user_has_tenant_access_async(email, tenant):
    """Whether the user is in the tenant's group (looked up in the database)."""
    from db import get_user_groups
    return tenant in await get_user_groups(email)
