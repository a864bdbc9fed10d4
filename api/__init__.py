"""Distillery's HTTP API: routes, schemas, auth, database models and storage. It never trains."""
