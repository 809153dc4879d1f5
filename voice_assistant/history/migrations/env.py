"""Alembic runs this for every command: the migrations run on the connection that migrate.py hands over,
inside that connection's transaction (so its caller's lock covers them)."""

from alembic import context

from voice_assistant.history.tables import Base

context.configure(connection=context.config.attributes["connection"], target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
