"""Alembic environment: runs on the connection the metadata store hands in, never on its own."""

from __future__ import annotations

from alembic import context

from conveyor.store.metadata.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by running alembic by hand
    raise RuntimeError(
        "Conveyor's migrations run through 'conveyor db upgrade' or MetadataStore.migrate()."
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
