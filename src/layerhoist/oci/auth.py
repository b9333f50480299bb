"""Registry authentication: the ``WWW-Authenticate`` challenge, bearer tokens and Basic.

A registry says how it wants to be spoken to in the 401 answer to any request:

- ``Basic realm="…"``: every request carries the credentials as HTTP Basic.
- ``Bearer realm="URL",service="S",scope="repository:NAME:pull"``: the client GETs ``URL``
  with ``service`` and ``scope`` (and its credentials as Basic, when it has some) and receives
  ``token`` or ``access_token`` with ``expires_in`` (:data:`DEFAULT_TOKEN_LIFETIME` when
  absent). The token goes with every request of that scope until shortly before it expires.

:class:`Authenticator` remembers the challenge, so after the first 401 every new scope gets its
token before its first request; tokens are cached per scope, fetched once however many
requests want one at the same time, and fetched again :attr:`AuthSettings.refresh_margin`
before expiry (also in the middle of a long run). A registry may refuse a token before the
``expires_in`` it announced (it revoked it, its lifetime is shorter, its clock runs ahead):
:meth:`Authenticator.refused` drops the token that was refused, and only that one, so however
many requests met the refusal at once, one fresh token replaces it. Tokens and passwords never
appear in messages.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeAlias

import aiohttp
import anyio
from yarl import URL

from layerhoist.oci.credentials import Credentials
from layerhoist.oci.errors import RegistryResponseError, parse_error_body

#: The token lifetime the distribution token spec prescribes when ``expires_in`` is absent.
DEFAULT_TOKEN_LIFETIME = 60.0
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
HTTP_OK = 200
#: How a bearer token's ``Authorization`` value starts.
BEARER_PREFIX = "Bearer "
#: A token answer larger than this is not a token answer.
MAX_TOKEN_ANSWER = 1024 * 1024
#: Credentials that change during a run (ECR's GetAuthorizationToken password): called before
#: each use, it returns the current ones (refreshing them itself when they near expiry).
CredentialSource: TypeAlias = Callable[[], Awaitable[Credentials]]


@dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """How tokens are kept."""

    #: A token is fetched again this many seconds before it expires (at most half its
    #: lifetime), so a request never leaves with a token that expires on the way.
    refresh_margin: float = 10.0


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: the scheme (lowercase) and its parameters."""

    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        """The token service URL (Bearer) or the protection space's name (Basic)."""
        return self.params.get("realm")


def parse_challenge(header: str) -> Challenge | None:
    """Parse ``Scheme k="v",k2=v2``; ``None`` for an empty or unparsable header."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        value = match[2]
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match[1].lower()] = value
    return Challenge(scheme.lower(), params)


def basic_header(credentials: Credentials) -> str:
    """The ``Authorization`` value of HTTP Basic for ``credentials``."""
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()


@dataclass
class _Token:
    header: str
    refresh_at: float
    #: The registry answered a request carrying it with something else than 401.
    accepted: bool = False


class Authenticator:
    """The ``Authorization`` header of each request to one registry, by scope.

    ``session`` returns the HTTP session to fetch tokens with; ``clock`` is monotonic seconds.
    ``credentials`` may be a :data:`CredentialSource`, asked before each use.
    """

    def __init__(
        self,
        *,
        registry: str,
        credentials: Credentials | CredentialSource | None,
        session: Callable[[], Awaitable[aiohttp.ClientSession]],
        settings: AuthSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._source: CredentialSource | None = None
        self._credentials: Credentials | None = None
        if isinstance(credentials, Credentials):
            self._credentials = credentials
        elif credentials is not None:
            self._source = credentials
        self._session = session
        self._settings = settings or AuthSettings()
        self._clock = clock
        self._challenge: Challenge | None = None
        self._tokens: dict[str, _Token] = {}
        self._locks: dict[str, anyio.Lock] = {}
        #: Tokens fetched so far (the first and every refresh), for tests and reports.
        self.tokens_fetched = 0
        #: Cached tokens the registry refused (401) before they were due for a refresh.
        self.tokens_refused = 0

    @property
    def identity(self) -> str:
        """Who requests are made as, for messages: ``as USER`` or ``anonymously``."""
        return f"as {self._credentials.username}" if self._credentials else "anonymously"

    async def _current(self) -> Credentials | None:
        """The credentials to use now: a source's current ones, else the fixed ones."""
        if self._source is not None:
            self._credentials = await self._source()
        return self._credentials

    @property
    def scheme(self) -> str | None:
        """``basic``, ``bearer``, or ``None`` while the registry has not challenged."""
        return self._challenge.scheme if self._challenge else None

    def learn(self, header: str | None) -> None:
        """Remember the challenge of a 401 (or of the ``/v2/`` ping)."""
        challenge = parse_challenge(header or "")
        if challenge is not None and challenge.scheme in {"basic", "bearer"}:
            self._challenge = challenge

    def accepted(self, scope: str, header: str | None) -> None:
        """The registry answered a request of ``scope`` sent with ``header`` other than 401."""
        token = self._tokens.get(scope)
        if token is not None and token.header == header:
            token.accepted = True

    def refused(self, scope: str, header: str | None) -> bool:
        """The registry answered 401 to a request of ``scope`` sent with ``header``.

        Drops the cached token of ``scope`` if ``header`` carried it; a token cached since (by
        a request that met the same refusal) stays. Returns whether the token went stale, so
        a fresh one may succeed: the registry had accepted it before, or another request has
        already dropped or replaced it. ``False`` for a token it never took, and for a request
        that carried no token.
        """
        if header is None or not header.startswith(BEARER_PREFIX):
            return False
        token = self._tokens.get(scope)
        if token is None or token.header != header:
            return True
        del self._tokens[scope]
        self.tokens_refused += 1
        return token.accepted

    async def header(self, scope: str) -> str | None:
        """The ``Authorization`` value for a request of ``scope``; ``None``: send none."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            credentials = await self._current()
            return basic_header(credentials) if credentials else None
        token = self._tokens.get(scope)
        if token is not None and self._clock() < token.refresh_at:
            return token.header
        lock = self._locks.setdefault(scope, anyio.Lock())
        async with lock:
            # Another request of this scope may have fetched it while this one waited.
            token = self._tokens.get(scope)
            if token is None or self._clock() >= token.refresh_at:
                token = await self._fetch(challenge, scope)
                self._tokens[scope] = token
            return token.header

    async def _fetch(self, challenge: Challenge, scope: str) -> _Token:
        realm = challenge.realm
        if not realm:
            raise RegistryResponseError(
                what=f"{self._registry}: bearer challenge without a realm", status=401
            )
        # Several scopes (a push that mounts from another repository) go as one ``scope``
        # parameter each, as the token spec writes them.
        query = [("scope", part) for part in scope.split()]
        if "service" in challenge.params:
            query.append(("service", challenge.params["service"]))
        headers = {}
        credentials = await self._current()
        if credentials is not None:
            headers["Authorization"] = basic_header(credentials)
        what = f"token for {scope} from {URL(realm).with_query(None)} ({self.identity})"
        session = await self._session()
        started = self._clock()
        async with session.get(URL(realm).update_query(query), headers=headers) as response:
            body = await response.content.read(MAX_TOKEN_ANSWER)
            if response.status != HTTP_OK:
                raise RegistryResponseError(
                    what=what,
                    status=response.status,
                    errors=parse_error_body(body),
                    retry_after=response.headers.get("Retry-After"),
                )
        try:
            answer = json.loads(body)
            value = answer.get("token") or answer.get("access_token")
            lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, TypeError, ValueError):
            value, lifetime = None, DEFAULT_TOKEN_LIFETIME
        if not isinstance(value, str) or not value:
            raise RegistryResponseError(what=f"{what}: answer without a token", status=502)
        self.tokens_fetched += 1
        margin = min(self._settings.refresh_margin, lifetime / 2)
        # Counted from when the request left: the token's clock started no later than that.
        return _Token(BEARER_PREFIX + value, started + lifetime - margin)
