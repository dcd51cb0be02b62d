"""Database access (old version: the email, but no group lookup)."""
import os

import psycopg2


async def get_user_email(user_id):
    conn = psycopg2.connect(os.environ["DATABASE_URL"], connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute('SELECT email FROM "user" WHERE id = %s', (user_id,))
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()
