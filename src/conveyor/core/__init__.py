"""Core: configuration, errors, ids, hashing, clocks and names. Imports nothing above it."""
