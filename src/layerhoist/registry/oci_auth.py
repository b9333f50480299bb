"""Who may use ``/v2/``: none, HTTP Basic, or Docker-Hub-style bearer tokens.

``RegistrySettings.oci_auth`` picks one::

    none    everyone pulls and pushes
    basic   every request carries Basic credentials of ``oci_users``; else 401 with
            ``WWW-Authenticate: Basic realm="layerhoist"``
    token   every request carries ``Bearer TOKEN`` whose scope covers the repository and
            action (``pull`` for GET/HEAD, ``push`` otherwise); else 401 with
            ``WWW-Authenticate: Bearer realm=".../_layerhoist/token",service=...,scope=...``

The token realm (``GET /_layerhoist/token?service=..&scope=repository:NAME:pull,push``, on
the same port) grants users of ``oci_users`` pull and push, anonymous callers pull only
(when ``oci_anonymous_pull``), and refuses wrong credentials with 401. Actions not granted
are left out of the token, so a push with it is challenged again, as Docker Hub does.
Tokens are random strings kept in memory with their scopes and expiry, at most
``oci_max_tokens`` of them. With ``oci_token_revoked_after`` shorter than
``oci_token_lifetime`` a token is refused before the ``expires_in`` it was handed out with,
as a registry that revokes tokens (or whose clock runs ahead) refuses them.

With the ``ecr`` and ``ecr-public`` flavors the password of a GetAuthorizationToken token
(user ``AWS``) counts as a user's: as Basic on ``/v2/`` for ECR, at the token realm for
ECR Public (its token exchange).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus

from aiohttp import web

from layerhoist.registry.errors import OciCode, OciError
from layerhoist.registry.oci_api import API_VERSION_HEADER
from layerhoist.registry.settings import RegistrySettings
from layerhoist.registry.stats import RegistryStats

TOKEN_PATH = "/_layerhoist/token"
BASIC_REALM = "layerhoist"
#: The user name GetAuthorizationToken's tokens carry (``base64("AWS:" + password)``).
ECR_USER = "AWS"
PULL, PUSH = "pull", "push"
#: Bytes of randomness in a token.
TOKEN_BYTES = 32


@dataclass(frozen=True)
class _Grant:
    """What one token allows, until when (wall clock)."""

    expires_at: float
    #: Repository -> actions.
    scopes: dict[str, frozenset[str]]


class OciAuth:
    """Admits ``/v2/`` requests and serves the token realm.

    ``ecr_password`` tells whether a password is one GetAuthorizationToken issued and
    still valid; ``wall_clock`` (epoch seconds) decides token expiry; ``stats`` counts tokens
    issued and refused.
    """

    def __init__(
        self,
        *,
        settings: RegistrySettings,
        ecr_password: Callable[[str], bool],
        stats: RegistryStats,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._ecr_password = ecr_password
        self._stats = stats
        self._wall_clock = wall_clock
        #: Token -> grant, oldest first (all last as long, so also soonest to expire first).
        self._tokens: dict[str, _Grant] = {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register the token realm (answers 404 unless ``oci_auth`` is ``token``)."""
        router.add_get(TOKEN_PATH, self.token)

    def admit(self, request: web.Request) -> None:
        """Let the request through, or raise 401 UNAUTHORIZED with the challenge."""
        mode = self._settings.oci_auth
        if mode == "none":
            return
        name = request.match_info.get("name")
        action = PULL if request.method in ("GET", "HEAD") else PUSH
        header = request.headers.get("Authorization", "")
        if mode == "basic":
            if self._basic_user(header) is None:
                raise self._challenge(f'Basic realm="{BASIC_REALM}"', "authentication required")
            return
        scheme, _, token = header.partition(" ")
        grant = self._tokens.get(token) if scheme.lower() == "bearer" else None
        if grant is not None and grant.expires_at <= self._wall_clock():
            self._stats.tokens_refused += 1
            grant = None
        # /v2/ and _catalog name no repository: any valid token will do.
        if grant is not None and (name is None or action in grant.scopes.get(name, ())):
            return
        actions = PULL if action == PULL else f"{PULL},{PUSH}"
        challenge = (
            f'Bearer realm="{request.scheme}://{request.host}{TOKEN_PATH}"'
            f',service="{self._service(request)}"'
        )
        if name is not None:
            challenge += f',scope="repository:{name}:{actions}"'
        raise self._challenge(challenge, "a token with this scope is required")

    async def token(self, request: web.Request) -> web.Response:
        """The token realm: a bearer token for the scopes asked, as far as they are granted."""
        if self._settings.oci_auth != "token":
            raise web.HTTPNotFound()
        header = request.headers.get("Authorization")
        user = None if header is None else self._basic_user(header)
        if (header is not None and user is None) or (
            header is None and not self._settings.oci_anonymous_pull
        ):
            error = self._challenge(f'Basic realm="{BASIC_REALM}"', "wrong or missing credentials")
            return web.json_response(error.body(), status=error.status, headers=error.headers)
        allowed = frozenset({PULL, PUSH}) if user is not None else frozenset({PULL})
        scopes: dict[str, frozenset[str]] = {}
        for scope in request.query.getall("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name:
                granted = allowed & frozenset(actions.split(","))
                scopes[name] = scopes.get(name, frozenset()) | granted
        now = self._wall_clock()
        lifetime = self._settings.oci_token_lifetime
        validity = self._settings.oci_token_validity
        token = self._issue(_Grant(expires_at=now + validity, scopes=scopes), now=now)
        self._stats.tokens_issued += 1
        issued = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
        return web.json_response(
            # Whole seconds: Go clients (skopeo) refuse a JSON number with a fraction here.
            {
                "token": token,
                "access_token": token,
                "expires_in": round(lifetime),
                "issued_at": issued,
            }
        )

    def _issue(self, grant: _Grant, *, now: float) -> str:
        for stale in list(self._tokens):
            if self._tokens[stale].expires_at > now and len(self._tokens) < (
                self._settings.oci_max_tokens
            ):
                break
            del self._tokens[stale]
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._tokens[token] = grant
        return token

    def _basic_user(self, header: str) -> str | None:
        """The user whose Basic credentials ``header`` carries, or ``None`` if not valid."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            text = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = text.partition(":")
        known = self._settings.oci_users.get(user)
        if known is not None and secrets.compare_digest(known, password):
            return user
        ecr_like = self._settings.flavor != "distribution"
        if ecr_like and user == ECR_USER and self._ecr_password(password):
            return user
        return None

    def _service(self, request: web.Request) -> str:
        return request.host

    def _challenge(self, challenge: str, message: str) -> OciError:
        return OciError(
            OciCode.UNAUTHORIZED,
            message,
            status=HTTPStatus.UNAUTHORIZED,
            headers={**API_VERSION_HEADER, "WWW-Authenticate": challenge},
        )
