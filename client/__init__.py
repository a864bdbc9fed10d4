"""The Distillery client: a typed HTTP client and the user CLI. Needs only httpx, rich and pydantic."""

from client.client import DistilleryClient, DistilleryError

__all__ = ["DistilleryClient", "DistilleryError"]
