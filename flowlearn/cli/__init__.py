"""The ``flowlearn`` command."""
from flowlearn.cli.main import main

__all__ = ["main"]
