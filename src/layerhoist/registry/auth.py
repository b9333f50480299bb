"""Who may call the registry: SigV4, checked in two steps around the body.

With credentials configured, every ECR API request and every admin request must be signed.
The ``Authorization`` header, its date and its credential scope are checked before a byte
of the body is read (a request nobody could have signed costs no memory); the signature,
which covers the body's sha256, once the body is in.

What a signature must be scoped to::

    ECR Public  (SpencerFrontendService.*)                 ecr-public  us-east-1
    ECR         (AmazonEC2ContainerRegistry_V20150921.*)   ecr         RegistrySettings.region
    admin endpoint (/_layerhoist/*)                        layerhoist  RegistrySettings.region

``host`` and ``x-amz-date`` must always be signed, and ``x-amz-target`` on the ECR APIs, so
a captured signature cannot be replayed as another operation. A client signs an admin
request as botocore signs any other::

    request = AWSRequest(method="GET", url=endpoint + "/_layerhoist/stats")
    SigV4Auth(Credentials(akid, secret), ADMIN_SERVICE, region).add_auth(request)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio.to_thread
from aiohttp import web

from layerhoist.registry.sigv4 import Authorization, check_authorization, verify_signature
from layerhoist.registry.wire import Body

#: ECR Public authenticates in us-east-1 only, whatever region the registry says.
ECR_PUBLIC_REGION = "us-east-1"
#: The service name of the admin endpoint's credential scope.
ADMIN_SERVICE = "layerhoist"
#: Headers an ECR API signature must cover (besides ``host``).
ECR_SIGNED_HEADERS = ("x-amz-date", "x-amz-target")
#: Headers an admin signature must cover (besides ``host``).
ADMIN_SIGNED_HEADERS = ("x-amz-date",)
#: Bodies at least this large are signature-checked in a worker thread (it hashes them).
THREAD_VERIFY_THRESHOLD = 256 * 1024


@dataclass(frozen=True)
class Scope:
    """What a request's signature must be scoped to and cover."""

    #: The service of the credential scope; ``None`` accepts any (an unknown target).
    service: str | None
    region: str
    signed_headers: tuple[str, ...]


class Authenticator:
    """SigV4 checks of requests against the configured credentials (none: everyone passes)."""

    def __init__(
        self,
        *,
        credentials: Mapping[str, str] | None,
        max_skew: float,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._credentials = credentials
        self._max_skew = max_skew
        self._wall_clock = wall_clock

    def check(self, request: web.BaseRequest, scope: Scope) -> Authorization | None:
        """Check the headers of ``request`` before its body is read; ``SignatureError`` if bad.

        ``None`` when no credentials are configured (nothing to verify later).
        """
        if self._credentials is None:
            return None
        return check_authorization(
            headers=request.headers,
            credentials=self._credentials,
            now=datetime.fromtimestamp(self._wall_clock(), UTC),
            max_skew=self._max_skew,
            service=scope.service,
            region=scope.region,
            required_signed_headers=scope.signed_headers,
        )

    async def verify(
        self, request: web.BaseRequest, authorization: Authorization | None, body: Body
    ) -> None:
        """Verify the signature of a checked request over the body received."""
        if authorization is None:
            return

        def verify() -> str:
            return verify_signature(
                authorization,
                method=request.method,
                path=request.rel_url.raw_path,
                query_string=request.rel_url.raw_query_string,
                headers=request.headers,
                body=body.view,
            )

        if body.length >= THREAD_VERIFY_THRESHOLD:
            await anyio.to_thread.run_sync(verify)
        else:
            verify()
