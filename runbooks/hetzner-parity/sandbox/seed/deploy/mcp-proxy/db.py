"""Database access (old version: no group lookup)."""


async def get_user_email(user_id):
    return None
