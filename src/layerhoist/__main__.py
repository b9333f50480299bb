"""``python -m layerhoist`` is the ``layerhoist`` command."""

from __future__ import annotations

import sys

from layerhoist.cli import main

sys.exit(main())
