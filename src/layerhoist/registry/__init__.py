"""A local, disk-backed registry speaking the ECR and ECR Public layer-upload APIs.

It imports nothing of the client, only the leaf modules every command shares (sizes and
exit codes): the client is tested against it as against a foreign service.
``async with EmbeddedRegistry(RegistrySettings(data_dir=...)) as registry`` serves on
``registry.endpoint_url``; ``python -m layerhoist.registry`` runs it as a process.
"""

from __future__ import annotations

from layerhoist.registry.server import EmbeddedRegistry as EmbeddedRegistry
from layerhoist.registry.settings import RegistrySettings as RegistrySettings
from layerhoist.registry.simulation import SimulationSettings as SimulationSettings

__all__ = ["EmbeddedRegistry", "RegistrySettings", "SimulationSettings"]
