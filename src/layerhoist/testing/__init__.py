"""What the tests, the demo and the benchmarks share: synthetic images and a peer registry.

- :mod:`.synthetic`: deterministic OCI layouts and layer bytes generated from a seed.
- :mod:`.distribution`: Debian's docker-registry (the CNCF distribution registry) as a process.
"""
