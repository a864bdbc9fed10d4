"""Pydantic models of the HTTP contract (design/API.md), one file per resource."""
