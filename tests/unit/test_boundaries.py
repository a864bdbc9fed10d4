"""kdcore is a library: walk its imports with ast and fail on anything from the service."""

import ast
from pathlib import Path

FORBIDDEN = {"api", "worker", "sqlalchemy", "celery", "fastapi", "starlette", "alembic", "redis", "psycopg"}
KDCORE = Path(__file__).resolve().parents[2] / "kdcore"


def test_kdcore_imports_nothing_from_the_service():
    offenders = []
    for path in KDCORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(KDCORE.parent)}: {name}" for name in names if name.split(".")[0] in FORBIDDEN]
    assert offenders == []
