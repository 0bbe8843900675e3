"""Prefect flows that chain the stages, and the `cantolab` CLI. Nothing imports this package."""
