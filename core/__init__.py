"""The service core both processes stand on: settings, database, models, job state, storage, queue, logging.

Imports neither torch nor FastAPI; ``api`` and ``worker`` both import it and never each other.
"""
