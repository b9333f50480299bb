"""``layerhoist sync``: keep registries' repositories in step with upstream, from a YAML file.

The file (:mod:`~layerhoist.sync.config`) becomes a :class:`~layerhoist.sync.model.SyncConfig`;
the plan resolves each mapping's tags and what each side holds; the run copies what changed,
keeps going past a failing tag, and records what it confirmed in the state file
(:mod:`layerhoist.state`).
"""
