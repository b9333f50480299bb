"""``python -m layerhoist.registry``: run the embedded registry in a process of its own."""

from __future__ import annotations

import sys

from layerhoist.registry.cli import main

if __name__ == "__main__":
    sys.exit(main())
