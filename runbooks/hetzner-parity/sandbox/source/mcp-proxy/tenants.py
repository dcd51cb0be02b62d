"""Tenants: a server is enabled only when its API key is configured."""
import os

SERVERS = {
    "github": {"enabled": bool(os.getenv("GITHUB_TOKEN"))},
    "trello": {"enabled": bool(os.getenv("TRELLO_API_KEY")) and bool(os.getenv("TRELLO_API_TOKEN"))},
    "sonarqube": {"enabled": bool(os.getenv("SONARQUBE_TOKEN"))},
    "clickup": {"enabled": bool(os.getenv("CLICKUP_API_KEY"))},
    "linear": dict(enabled=bool(os.getenv("LINEAR_API_KEY"))),
}


async def user_has_tenant_access_async(email, tenant):
    from db import get_user_groups
    return tenant in await get_user_groups(email)
