"""ECR and ECR Public through their layer API: the destination, its part bodies, limits and errors.

- :mod:`.destination`: :class:`~.destination.EcrDestination` and its blob uploads (aioboto3).
- :mod:`.body`: UploadLayerPart bodies built in the hashing pass and spliced into botocore.
- :mod:`.limits`: part sizes, batch sizes, published request-rate quotas.
- :mod:`.errors`: the error table (service codes, botocore and aiohttp exceptions).
- :mod:`.oci`: :class:`~.oci.EcrOciDestination`, the same repositories through ``/v2/``
  (``--transport oci``), composed of the registry destination and the API one.
- :mod:`.token`: GetAuthorizationToken's password, refreshed before it expires.
- :mod:`.oci_errors`: the ``/v2/`` transport's error table (the registry's, then the API's).
"""
