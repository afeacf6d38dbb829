"""Platform: the metadata store, the artifact store, lineage and audit, chosen by URI."""
