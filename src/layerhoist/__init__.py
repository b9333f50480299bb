"""layerhoist: push container image layers into ECR / ECR Public as fast as the wire allows."""

from __future__ import annotations

from layerhoist.config import PushConfig as PushConfig

__all__ = ["PushConfig"]
__version__ = "0.1.0"
