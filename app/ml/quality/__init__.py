"""Data quality of a labelled dataset: duplicates (within it and across two datasets), class
balance, length distribution and likely label errors, from a frozen backbone's features.
Pure computation: no web framework, database or queue (the worker reads and writes)."""
