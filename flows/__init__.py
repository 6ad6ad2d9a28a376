"""Prefect flows: thin wrappers that wire genreops stages to Prefect and Dask."""
