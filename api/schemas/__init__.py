"""Request models of the HTTP contract (docs/API.md); response models live in client/models.py, shared with the client."""
