"""Alembic environment. Runs on the connection that `db.migrate.upgrade` hands over."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `loyalty db upgrade` (db.migrate), which provides the connection")

context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
