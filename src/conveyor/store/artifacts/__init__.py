"""The content-addressed artifact store and the byte backends under it."""
