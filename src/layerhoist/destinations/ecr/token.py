"""GetAuthorizationToken's credentials for ECR's ``/v2/``, fetched again before they expire.

Both services answer with ``base64("AWS:" + password)`` and an ``expiresAt`` (12 hours on
AWS): ECR in ``authorizationData[0]`` with the registry's ``proxyEndpoint``, ECR Public in
``authorizationData`` (no endpoint: its registry is ``public.ecr.aws``). The password is sent
as HTTP Basic to ECR, and as the Basic credentials of the bearer-token exchange to ECR
Public; either way :meth:`EcrTokens.credentials` is the
:data:`~layerhoist.oci.auth.CredentialSource` the registry client asks before each use, so a
mirror run longer than a token's life carries on with a fresh one. The password is kept in a
:class:`~layerhoist.oci.credentials.Credentials` (never in a ``repr``) and never logged.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio

from layerhoist.errors import CredentialsError
from layerhoist.oci.credentials import Credentials
from layerhoist.refs import DestinationService

#: A token is fetched again this many seconds before it expires (at most half its life), so
#: no request leaves with a password that expires on the way, and a slow blob has time to end.
DEFAULT_REFRESH_MARGIN = 15 * 60.0


@dataclass(frozen=True, kw_only=True)
class EcrTokenSettings:
    """When GetAuthorizationToken is called again."""

    #: Seconds before ``expiresAt`` at which a new token is fetched.
    refresh_margin: float = DEFAULT_REFRESH_MARGIN

    def __post_init__(self) -> None:
        if self.refresh_margin < 0:
            raise ValueError(f"refresh_margin must not be negative, got {self.refresh_margin}")


@dataclass(frozen=True, kw_only=True)
class EcrToken:
    """One GetAuthorizationToken answer, decoded."""

    credentials: Credentials
    #: Epoch seconds at which the password stops working.
    expires_at: float
    #: ``https://HOST`` of the registry serving ``/v2/`` (ECR); ``None`` for ECR Public.
    proxy_endpoint: str | None


def parse_authorization(service: DestinationService, answer: Mapping[str, Any]) -> EcrToken:
    """Decode the answer of ``service``'s GetAuthorizationToken (the secret stays hidden)."""
    data = answer.get("authorizationData")
    if service == "ecr":
        data = data[0] if isinstance(data, list) and data else None
    if not isinstance(data, Mapping):
        raise CredentialsError(f"{service}: GetAuthorizationToken answered without a token")
    try:
        decoded = base64.b64decode(str(data["authorizationToken"]), validate=True).decode()
    except (KeyError, binascii.Error, UnicodeDecodeError) as exc:
        raise CredentialsError(
            f"{service}: GetAuthorizationToken's token is not base64 of USER:PASSWORD"
        ) from exc
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise CredentialsError(
            f"{service}: GetAuthorizationToken's token is not base64 of USER:PASSWORD"
        )
    expires = data.get("expiresAt")
    expires_at = expires.timestamp() if isinstance(expires, datetime) else float(expires or 0)
    endpoint = data.get("proxyEndpoint")
    return EcrToken(
        credentials=Credentials(username, password),
        expires_at=expires_at,
        proxy_endpoint=str(endpoint) if endpoint else None,
    )


class EcrTokens:
    """The current GetAuthorizationToken credentials of one service, refreshed before expiry.

    ``fetch`` makes the call (paced and measured by the caller); ``wall_clock`` is epoch
    seconds, as ``expiresAt`` is.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Mapping[str, Any]]],
        *,
        service: DestinationService,
        settings: EcrTokenSettings | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._service = service
        self._settings = settings or EcrTokenSettings()
        self._wall_clock = wall_clock
        self._token: EcrToken | None = None
        self._refresh_at = 0.0
        self._lock = anyio.Lock()
        #: GetAuthorizationToken calls made (the first and every refresh).
        self.fetched = 0

    async def current(self) -> EcrToken:
        """The token to use now: the cached one, or a fresh one once it nears expiry."""
        token = self._token
        if token is not None and self._wall_clock() < self._refresh_at:
            return token
        async with self._lock:
            # Another request may have refreshed it while this one waited.
            if self._token is None or self._wall_clock() >= self._refresh_at:
                fetched_at = self._wall_clock()
                self._token = parse_authorization(self._service, await self._fetch())
                self.fetched += 1
                life = max(0.0, self._token.expires_at - fetched_at)
                margin = min(self._settings.refresh_margin, life / 2)
                self._refresh_at = self._token.expires_at - margin
            return self._token

    async def credentials(self) -> Credentials:
        """The current user and password: a :data:`~layerhoist.oci.auth.CredentialSource`."""
        return (await self.current()).credentials
