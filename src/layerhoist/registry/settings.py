"""The settings of one embedded registry, fixed for its lifetime (simulation knobs excepted).

Disputed service limits are settings with the stricter value as default where the
sources disagree (see ``shared/ecr-api-notes.md``). Memory bound of the server::

    request bodies held at once          <= buffered_body_limit
    + one decoded part per part stored   <= max_part_size each
    + idle body buffers kept for reuse   <= POOLED_BUFFERS * body_limit (wire.py)

Bodies are allocated as their bytes arrive, never from a declared Content-Length, and a
request that would take the bodies held past ``buffered_body_limit`` is answered with
ThrottlingException. Layers themselves are streamed to disk part by part and never held whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from layerhoist.registry.simulation import SimulationSettings
from layerhoist.registry.validation import ACCOUNT_ID_RE, REGION_RE

KiB = 1024
MiB = 1024 * KiB

#: ECR refuses a non-final part smaller than this at CompleteLayerUpload.
DEFAULT_MIN_PART_SIZE = 5 * MiB
#: The largest ``layerPartBlob`` of the API model (the quota pages say 10 MiB).
DEFAULT_MAX_PART_SIZE = 20 * MiB
#: The ``partSize`` InitiateLayerUpload answers with.
DEFAULT_PART_SIZE = 10 * MiB
#: Room for the JSON around a part's base64 text.
BODY_OVERHEAD = 64 * KiB
#: Base64 turns every 3 bytes into 4 characters.
BASE64_IN, BASE64_OUT = 3, 4


#: Bodies of operations other than UploadLayerPart and PutImage are small: a hundred
#: digests or image ids, or an ECR Public catalogData with its base64 logo (512,000 bytes).
DEFAULT_MAX_SMALL_BODY_SIZE = 1 * MiB
#: Request bodies of the largest size that may be held at once by default: as many parts
#: as the client pushes layers at once by default (16), with room to spare.
BUFFERED_BODIES = 16
#: Seconds a connection may take to deliver its request headers, and a body may stall.
DEFAULT_TIMEOUT = 30.0
#: Connections served at once: well under the usual descriptor limit of 1024, which the
#: data files, the catalog and the worker threads share.
DEFAULT_MAX_CONNECTIONS = 512
#: ECR request bodies nest three levels at most; a manifest travels as a string.
DEFAULT_MAX_JSON_DEPTH = 32
#: Arrays and objects in one body: a batch of a hundred image ids is about a hundred.
DEFAULT_MAX_JSON_CONTAINERS = 10_000
#: An upload nobody touched for an hour is abandoned: clients send parts back to back.
DEFAULT_UPLOAD_IDLE_LIMIT = 3600.0
#: How often abandoned uploads are looked for (and their files removed).
DEFAULT_UPLOAD_SWEEP_INTERVAL = 60.0
#: Shortest time between two log lines about one condition (the rest are counted).
DEFAULT_LOG_INTERVAL = 60.0
#: Bytes of a streamed ``/v2/`` blob body held before they are written: one piece per request.
DEFAULT_OCI_STREAM_PIECE = 1 * MiB
#: The largest layer ECR private takes (52,000 MiB); ECR Public's is 10,000 MiB.
DEFAULT_MAX_BLOB_SIZE = 52_000 * MiB
#: Seconds a token of the ``/v2/`` token realm lasts (Docker Hub's tokens last 300 s).
DEFAULT_TOKEN_LIFETIME = 300.0
#: Tokens kept at once; the oldest go first (a client asks again on its next 401).
DEFAULT_MAX_TOKENS = 10_000
#: Clients (addresses) whose pulls are counted at once under ``pull_limit``.
DEFAULT_MAX_PULL_CLIENTS = 10_000
#: What ``/v2/`` behaves like: CNCF distribution, ECR private or ECR Public.
FLAVORS = ("distribution", "ecr", "ecr-public")
#: How ``/v2/`` requests authenticate.
OCI_AUTH_MODES = ("none", "basic", "token")


def base64_length(nbytes: int) -> int:
    """Characters of the padded base64 text of ``nbytes`` bytes."""
    return -(-nbytes // BASE64_IN) * BASE64_OUT


@dataclass(frozen=True, kw_only=True)
class RegistrySettings:
    """Where the registry keeps its data, where it listens and which service limits it applies."""

    #: Blobs, uploads in progress and the SQLite catalog live here and nowhere else.
    data_dir: Path
    host: str = "127.0.0.1"
    #: 0 picks a free port; read the real one from ``EmbeddedRegistry.endpoint_url``.
    port: int = 0
    #: Network and fault simulation; changeable while running through the admin endpoint.
    simulation: SimulationSettings = field(default_factory=SimulationSettings)
    #: Access key id -> secret; when set, every ECR API request must carry a valid SigV4
    #: signature from one of them. The OCI read side stays anonymous.
    credentials: Mapping[str, str] | None = None
    #: Smallest non-final part accepted at CompleteLayerUpload (LayerPartTooSmallException).
    min_part_size: int = DEFAULT_MIN_PART_SIZE
    #: Largest part UploadLayerPart accepts (InvalidLayerPartException above it).
    max_part_size: int = DEFAULT_MAX_PART_SIZE
    #: ``partSize`` returned by InitiateLayerUpload.
    part_size: int = DEFAULT_PART_SIZE
    #: Largest request body read; larger ones are refused before they are read.
    #: ``None`` derives it from ``max_part_size`` (its base64 text plus JSON room).
    max_body_size: int | None = None
    #: The 12-digit registry id reported in responses and ARNs.
    account_id: str = "123456789012"
    #: The region of the ECR API: signatures of ``ecr`` requests must be scoped to it (ECR
    #: Public signs in us-east-1 whatever this says), and ARNs name it.
    region: str = "us-east-1"
    #: Seconds in-flight requests get to finish when the registry stops.
    shutdown_timeout: float = 5.0
    #: Largest accepted difference between a signature's date and the server's clock.
    signature_max_skew: float = 300.0
    #: Largest body of every operation but UploadLayerPart and PutImage (which may send
    #: ``body_limit``), and of the admin endpoint; never more than ``body_limit``.
    max_small_body_size: int = DEFAULT_MAX_SMALL_BODY_SIZE
    #: Request body bytes held by all requests at once; ``None`` derives it as
    #: ``BUFFERED_BODIES * body_limit``. A request that does not fit is throttled.
    max_buffered_body_bytes: int | None = None
    #: Seconds a connection may take to send a request's headers, from its opening or from
    #: the previous response; an idle keep-alive connection is closed after as long.
    header_timeout: float = DEFAULT_TIMEOUT
    #: Seconds a request body may go without a byte arriving before its connection is closed.
    body_idle_timeout: float = DEFAULT_TIMEOUT
    #: Connections served at once; further ones are closed as soon as they are accepted.
    #: Keep it under the process's descriptor limit (``ulimit -n``).
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: Deepest nesting of JSON arrays and objects in a request body.
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    #: Most JSON arrays and objects (outside strings) in one request body.
    max_json_containers: int = DEFAULT_MAX_JSON_CONTAINERS
    #: Seconds of inactivity after which an upload is discarded and its file removed; the
    #: simulation's ``upload_expiry``, when set, takes its place.
    upload_idle_limit: float = DEFAULT_UPLOAD_IDLE_LIMIT
    #: Seconds between two sweeps for idle uploads.
    upload_sweep_interval: float = DEFAULT_UPLOAD_SWEEP_INTERVAL
    #: Shortest time between two log lines about the same condition.
    log_interval: float = DEFAULT_LOG_INTERVAL
    #: Which registry ``/v2/`` imitates: ``distribution`` creates a repository on its first
    #: push; ``ecr`` and ``ecr-public`` answer with ECR's quirks (``NAME_UNKNOWN`` for a
    #: missing repository, 201 on PATCH, ``min_part_size`` per PATCH but the last,
    #: ``BLOB_UPLOAD_INVALID`` on a digest mismatch; mounts as ``blob_mounting`` says).
    flavor: str = "distribution"
    #: Whether the ``ecr`` flavor's account setting ``BLOB_MOUNTING`` starts ``ENABLED`` (ECR's
    #: default is ``DISABLED``; PutAccountSetting changes it while the registry runs). When on,
    #: ``/v2/`` mounts a blob only if an image of the source repository references it, as ECR
    #: does. ``distribution`` mounts any blob the source repository holds; ``ecr-public``
    #: never mounts.
    blob_mounting: bool = False
    #: ``/v2/`` authentication: ``none``, ``basic`` (401 with a Basic challenge) or ``token``
    #: (a Bearer challenge naming the token realm ``/_layerhoist/token`` on this port).
    oci_auth: str = "none"
    #: User -> password of ``/v2/`` (Basic, or Basic at the token realm). With the ``ecr`` and
    #: ``ecr-public`` flavors the password of a GetAuthorizationToken token (user ``AWS``) is
    #: accepted too.
    oci_users: Mapping[str, str] = field(default_factory=dict)
    #: Whether the token realm hands pull-only tokens to callers without credentials.
    oci_anonymous_pull: bool = True
    #: Seconds a realm token lasts (``expires_in``).
    oci_token_lifetime: float = DEFAULT_TOKEN_LIFETIME
    #: Seconds after which a realm token is refused (401) whatever ``expires_in`` said, when
    #: shorter than ``oci_token_lifetime``: a registry that revokes tokens early, or whose
    #: clock runs ahead of the client's. ``None``: tokens last their announced lifetime.
    oci_token_revoked_after: float | None = None
    #: Realm tokens remembered at once (bounded memory; the oldest are forgotten first).
    oci_max_tokens: int = DEFAULT_MAX_TOKENS
    #: Manifest GETs allowed per client address in ``pull_limit_window`` seconds (Docker
    #: Hub's pull limit); ``None`` counts nothing. HEAD requests are free.
    pull_limit: int | None = None
    #: The pull limit's window in seconds (Docker Hub: 6 hours).
    pull_limit_window: float = 6 * 3600.0
    #: Client addresses counted at once; beyond it the stalest count is forgotten.
    max_pull_clients: int = DEFAULT_MAX_PULL_CLIENTS
    #: Bytes of a streamed ``/v2/`` blob body held at once per request (from the body budget,
    #: so never more than ``max_buffered_body_bytes``).
    oci_stream_piece: int = DEFAULT_OCI_STREAM_PIECE
    #: Largest blob ``/v2/`` accepts (one request's body, or an upload's total).
    max_blob_size: int = DEFAULT_MAX_BLOB_SIZE

    def __post_init__(self) -> None:
        if not 0 < self.min_part_size <= self.part_size <= self.max_part_size:
            raise ValueError("need 0 < min_part_size <= part_size <= max_part_size")
        for name in ("max_body_size", "max_buffered_body_bytes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive")
        if self.buffered_body_limit < self.body_limit:
            raise ValueError("max_buffered_body_bytes must hold at least one body_limit")
        for name in ("max_small_body_size", "max_connections"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 < self.max_json_depth <= self.max_json_containers:
            raise ValueError("need 0 < max_json_depth <= max_json_containers")
        for name in (
            "header_timeout",
            "body_idle_timeout",
            "upload_idle_limit",
            "upload_sweep_interval",
            "log_interval",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if REGION_RE.fullmatch(self.region) is None:
            raise ValueError(f"not a region name: {self.region!r}")
        if ACCOUNT_ID_RE.fullmatch(self.account_id) is None:
            raise ValueError("account_id must be 12 digits")
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port out of range: {self.port}")
        if self.shutdown_timeout < 0:
            raise ValueError("shutdown_timeout must be >= 0")
        if self.flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {', '.join(FLAVORS)}, not {self.flavor!r}")
        if self.oci_auth not in OCI_AUTH_MODES:
            raise ValueError(f"oci_auth must be one of {', '.join(OCI_AUTH_MODES)}")
        for user, password in self.oci_users.items():
            if not user or ":" in user or not password:
                raise ValueError("oci_users need a user without ':' and a password")
        for name in ("oci_token_lifetime", "pull_limit_window"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.oci_token_revoked_after is not None and not self.oci_token_revoked_after > 0:
            raise ValueError("oci_token_revoked_after must be positive")
        for name in ("oci_max_tokens", "max_pull_clients", "oci_stream_piece", "max_blob_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.pull_limit is not None and self.pull_limit < 0:
            raise ValueError("pull_limit must be >= 0")

    @property
    def oci_token_validity(self) -> float:
        """Seconds a realm token is honoured: its lifetime, or less when revoked earlier."""
        if self.oci_token_revoked_after is None:
            return self.oci_token_lifetime
        return min(self.oci_token_lifetime, self.oci_token_revoked_after)

    @property
    def body_limit(self) -> int:
        """The effective largest request body, in bytes."""
        if self.max_body_size is not None:
            return self.max_body_size
        return base64_length(self.max_part_size) + BODY_OVERHEAD

    @property
    def small_body_limit(self) -> int:
        """The largest body of the operations that only need a small one, in bytes."""
        return min(self.max_small_body_size, self.body_limit)

    @property
    def buffered_body_limit(self) -> int:
        """The effective most request body bytes held at once."""
        if self.max_buffered_body_bytes is not None:
            return self.max_buffered_body_bytes
        return BUFFERED_BODIES * self.body_limit

    def replace(self, **changes: object) -> RegistrySettings:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
