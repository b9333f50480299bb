"""An OCI image layout as a destination (``oci:DIR[:TAG]``), for air-gapped transfers.

- :mod:`.destination`: :class:`~.destination.OciLayoutDestination` and its blob uploads.
- :mod:`.files`: the blocking file steps (temporary files, fsync, atomic renames).
- :mod:`.limits`: part sizes for local files.
- :mod:`.errors`: the error table (the OS errors of writing, naming the path).
"""
