"""The ``conveyor`` command line: a thin layer over the service APIs."""
