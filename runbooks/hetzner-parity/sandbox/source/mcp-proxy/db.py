"""Database access: user email and groups from Open WebUI's database
(DATABASE_URL: its Postgres, tables "user" and "group")."""
import asyncio
import os

import psycopg2


def _query(sql, args):
    conn = psycopg2.connect(os.environ["DATABASE_URL"], connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


async def get_user_email(user_id):
    """The email of an Open WebUI user id (JWTs carry the id, not the email)."""
    rows = await asyncio.to_thread(_query, 'SELECT email FROM "user" WHERE id = %s', (user_id,))
    return rows[0][0] if rows else None


async def get_user_groups(email):
    """Group names of a user, for tenant access control (Open WebUI keeps a
    group's members as a JSON list of user ids)."""
    rows = await asyncio.to_thread(
        _query,
        'SELECT g.name FROM "group" g JOIN "user" u ON g.user_ids::jsonb ? u.id '
        "WHERE u.email = %s ORDER BY g.name",
        (email,),
    )
    return [r[0] for r in rows]
