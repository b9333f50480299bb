"""The OCI distribution API as a client, one module per protocol concern.

::

    client       RegistryClient: one host's session, /v2/ ping (https, or http when allowed),
                 authenticated requests; ClientSettings
    auth         the WWW-Authenticate challenge, bearer tokens cached per scope, Basic
    credentials  --src-creds, the auth file, docker-credential helpers
    manifest     manifest HEAD/GET: Accept, media types, size limit, digest check
    blob         blob GET streamed, resumed with Range where the connection broke
    push         the push steps: blob HEAD, upload POST (mount), PATCH, PUT, manifest PUT
    tag          tags/list, paginated with Link
    ratelimit    Docker Hub's ratelimit-* headers
    errors       RegistryResponseError and the transport's error table (OciErrors)

Sources and destinations build on it (:mod:`layerhoist.sources.registry`,
:mod:`layerhoist.destinations.registry`); it imports no
source, destination or pipeline.
"""

from __future__ import annotations

from layerhoist.oci.blob import BlobReader as BlobReader
from layerhoist.oci.blob import BlobStats as BlobStats
from layerhoist.oci.client import ClientSettings as ClientSettings
from layerhoist.oci.client import RegistryClient as RegistryClient
from layerhoist.oci.credentials import Credentials as Credentials
from layerhoist.oci.credentials import find_credentials as find_credentials
from layerhoist.oci.credentials import parse_credentials as parse_credentials
from layerhoist.oci.errors import OciErrors as OciErrors
from layerhoist.oci.errors import RegistryResponseError as RegistryResponseError
from layerhoist.oci.errors import classifier as classifier
from layerhoist.oci.manifest import get_manifest as get_manifest
from layerhoist.oci.manifest import head_manifest as head_manifest
from layerhoist.oci.ratelimit import RateLimit as RateLimit
from layerhoist.oci.tag import list_tags as list_tags

__all__ = [
    "BlobReader",
    "BlobStats",
    "ClientSettings",
    "Credentials",
    "OciErrors",
    "RateLimit",
    "RegistryClient",
    "RegistryResponseError",
    "classifier",
    "find_credentials",
    "get_manifest",
    "head_manifest",
    "list_tags",
    "parse_credentials",
]
