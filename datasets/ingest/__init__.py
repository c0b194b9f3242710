"""Turning an archive or a folder of class folders into training-ready arrays.

Nothing here touches the database: the service layer calls in with paths and options and
gets back a result to store, so the pipeline can be benchmarked and tested on its own.
"""
from __future__ import annotations


class IngestError(Exception):
    """A problem with the user's data, worded for the user."""
