"""Alembic migrations of the metadata store, shipped in the package."""
