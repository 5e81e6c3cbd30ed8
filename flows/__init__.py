"""Prefect flows that route stored submissions to their destinations."""
