"""Exit codes of every ``layerhoist`` command (copy, sync, serve, bench and the bench's cells).

Scripts rely on these numbers: they are defined here once and nowhere else.
"""

from __future__ import annotations

from typing import Final

#: Every image landed (or the command did what it was asked).
EXIT_OK: Final = 0
#: Some image failed, or the run could not start; each failure is named on stderr.
EXIT_FAILED: Final = 1
#: The command line or a setting is invalid.
EXIT_USAGE: Final = 2
#: Another ``layerhoist sync`` holds the state file's lock (an overlapping run).
EXIT_LOCKED: Final = 3
#: 128 + SIGINT, what shells expect of a command stopped by Ctrl-C.
EXIT_INTERRUPTED: Final = 130
