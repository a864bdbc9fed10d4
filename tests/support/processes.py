"""Whether a process is still there and which children it has, read from /proc.

A process being torn down can answer a read of its /proc files with ESRCH (ProcessLookupError)
rather than ENOENT, so both mean "gone".
"""

from __future__ import annotations

from pathlib import Path

GONE = (FileNotFoundError, ProcessLookupError)


def running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie waiting to be reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (*GONE, IndexError):
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    """The direct children of ``pid``; none once it has gone."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except GONE:
        return []


def command_line(pid: int) -> str:
    """``pid``'s argv joined by spaces; empty once it has gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except GONE:
        return ""
