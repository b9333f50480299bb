"""An OCI registry as a destination (``docker://HOST/REPO[:TAG]``), over the distribution API.

- :mod:`.destination`: :class:`~.destination.RegistryDestination`: ping and auth, blob HEADs,
  cross-repository mounts, manifests.
- :mod:`.upload`: the two upload strategies, one streamed PUT or PATCH chunks then PUT.
- :mod:`.mounts`: :class:`~.mounts.KnownBlobs`, which repositories of a host hold a blob.
- :mod:`.limits`: part sizes and the destination's settings (the upload strategy).
- :mod:`.errors`: the error table (the OCI table, and a broken streamed upload).
"""
