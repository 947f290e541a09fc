"""PostgreSQL helpers for the tests (``from pgtools import ...``; ``tests/`` is on sys.path)."""

from __future__ import annotations


def drop_campaign_database(admin_url: str, url: str) -> None:
    """Drop a test's database, then the campaign's roles (``chamberd_<campaign id>_*``: roles
    are cluster-wide and outlive the database)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    campaign = None
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=30) as conn:
            if conn.execute("SELECT to_regclass('campaign')").fetchone()[0]:
                campaign = conn.execute("SELECT campaign_id FROM campaign").fetchone()[0]
    except psycopg.Error:
        pass  # no such database (any more)
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=30) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if campaign:
            roles = admin.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                (f"chamberd\\_{campaign}\\_%",),
            ).fetchall()
            # site roles first: they are members of the campaign's groups
            for (role,) in sorted(roles, key=lambda r: "_site_" not in r[0]):
                admin.execute(f'DROP ROLE IF EXISTS "{role}"')
