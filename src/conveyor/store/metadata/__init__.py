"""The metadata store: SQL tables for every record, migrations, units of work."""
