"""Database access: user email and groups from Open WebUI's database."""


async def get_user_email(user_id):
    """The email of an Open WebUI user id (JWTs carry the id, not the email)."""
    return None


async def get_user_groups(email):
    """Group names of a user, for tenant access control."""
    return []
