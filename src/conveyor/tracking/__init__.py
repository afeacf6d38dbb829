"""Experiment tracking: runs, params, metrics, tags, artifacts; asynchronous logging; search."""
