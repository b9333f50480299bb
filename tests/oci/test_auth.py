"""Bearer tokens a registry refuses before the expiry it announced: dropped, fetched once again.

Against the embedded registry with token auth whose tokens announce ``expires_in`` 300 s but
are refused 60 s after they were issued (``oci_token_revoked_after``); the test moves the
registry's wall clock, so the client still holds a token it believes good for minutes.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from yarl import URL

from conftest import RegistryFactory, sha256_digest
from layerhoist.destinations.registry.errors import RegistryDestinationErrors, UploadBroken
from layerhoist.errors import CredentialsError
from layerhoist.oci.client import ClientSettings, RegistryClient
from layerhoist.oci.credentials import Credentials
from layerhoist.oci.errors import OciErrors, RegistryResponseError, StaleTokenError
from layerhoist.oci.push import blob_exists, open_upload, put_blob
from layerhoist.registry import EmbeddedRegistry
from layerhoist.transfer.verdicts import Action, Classifier

pytestmark = pytest.mark.anyio

USER, PASSWORD = "alice", "wonderland-7"
REPO = "auth/app"
#: What the realm announces, and when the registry stops honouring a token.
ANNOUNCED, REVOKED_AFTER = 300.0, 60.0
#: Requests sent at once with the same revoked token.
CONCURRENT = 8
START = 1_000_000.0


@asynccontextmanager
async def token_registry(
    make_registry: RegistryFactory, wall_clock: Callable[[], float], **changes: Any
) -> AsyncIterator[EmbeddedRegistry]:
    """The embedded registry with token auth, on ``wall_clock``."""
    settings = make_registry(
        oci_auth="token",
        oci_users={USER: PASSWORD},
        oci_token_lifetime=ANNOUNCED,
        oci_token_revoked_after=REVOKED_AFTER,
        **changes,
    ).settings
    async with EmbeddedRegistry(settings, wall_clock=wall_clock) as registry:
        yield registry


def client_of(registry: EmbeddedRegistry) -> RegistryClient:
    """A client of ``registry`` as ``USER``."""
    host = registry.endpoint_url.removeprefix("http://")
    return RegistryClient(
        registry=host,
        endpoint=host,
        credentials=Credentials(USER, PASSWORD),
        settings=ClientSettings(tls_verify=False),
    )


async def streamed(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as a streamed body (one that cannot be sent twice)."""
    yield data


def token_counts(registry: EmbeddedRegistry) -> tuple[int, int]:
    """Tokens the registry issued, and requests it refused for a token no longer honoured."""
    stats = registry.stats()
    issued, refused = stats["tokens_issued"], stats["tokens_refused"]
    assert isinstance(issued, int)
    assert isinstance(refused, int)
    return issued, refused


async def test_a_revoked_token_is_replaced_once_for_requests_refused_together(
    make_registry: RegistryFactory,
) -> None:
    now = [START]
    async with (
        token_registry(make_registry, lambda: now[0]) as registry,
        client_of(registry) as client,
    ):
        digest = sha256_digest(b"nowhere")
        assert not await blob_exists(client, REPO, digest, where="blob")
        assert client.auth.tokens_fetched == 1
        now[0] += REVOKED_AFTER + 1
        found: list[bool] = []

        async def check() -> None:
            found.append(await blob_exists(client, REPO, digest, where="blob"))

        async with anyio.create_task_group() as tasks:
            for _ in range(CONCURRENT):
                tasks.start_soon(check)
        assert found == [False] * CONCURRENT
        # Requests that met the refusal together got one fresh token for them all.
        assert client.auth.tokens_fetched == 2
        assert client.auth.tokens_refused == 1
        issued, refused = token_counts(registry)
        assert issued == 2
        assert 1 <= refused <= CONCURRENT  # those sent after the fresh token came were not
        # A refusal of the old token that arrives after its replacement keeps the replacement.
        scope = f"repository:{REPO}:pull,push"
        fresh = await client.auth.header(scope)
        assert client.auth.refused(scope, "Bearer revoked-long-ago")
        assert await client.auth.header(scope) == fresh
        assert client.auth.tokens_fetched == 2


async def test_a_fresh_token_refused_again_is_the_credentials_error(
    make_registry: RegistryFactory,
) -> None:
    # Every reading of this clock is a minute past the last: no token survives to its use.
    ticks = itertools.count(START, REVOKED_AFTER + 1)
    async with (
        token_registry(make_registry, lambda: next(ticks)) as registry,
        client_of(registry) as client,
    ):
        with pytest.raises(RegistryResponseError) as raised:
            await blob_exists(client, REPO, sha256_digest(b"x"), where="blob")
        assert raised.value.status == 401
        assert not isinstance(raised.value, StaleTokenError)
        # One retry with one fresh token, not a loop.
        assert client.auth.tokens_fetched == 2
        verdict = Classifier((OciErrors("destination"),))(raised.value, operation="HeadBlob")
        assert verdict.action is Action.FAIL
        assert verdict.error_class is CredentialsError
        # A streamed body refused for a token the registry never took: no retry either.
        session = URL(f"/v2/{REPO}/blobs/uploads/{uuid.uuid4()}")
        with pytest.raises(RegistryResponseError) as refused:
            await put_blob(
                client, REPO, session, digest=sha256_digest(b"x"), data=streamed(b"x"), where="b"
            )
        assert refused.value.status == 401
        assert not isinstance(refused.value, StaleTokenError)
        assert client.auth.tokens_fetched == 3


async def test_a_streamed_body_refused_for_a_stale_token_starts_over_with_a_fresh_one(
    make_registry: RegistryFactory,
) -> None:
    now = [START]
    blob = b"streamed " * 10_000
    digest = sha256_digest(blob)

    async with (
        token_registry(make_registry, lambda: now[0]) as registry,
        client_of(registry) as client,
    ):
        opened = await open_upload(client, REPO, where="blob")
        assert opened.location is not None
        now[0] += REVOKED_AFTER + 1
        with pytest.raises(StaleTokenError) as raised:
            await put_blob(
                client, REPO, opened.location, digest=digest, data=streamed(blob), where="blob"
            )
        # The body cannot be sent twice: the token is dropped, and the retry layer starts the
        # blob over (a streamed upload's failure is an UploadBroken).
        assert client.auth.tokens_refused == 1
        assert client.auth.tokens_fetched == 1
        broken = UploadBroken("blob: the upload broke", cause=raised.value)
        verdict = Classifier((RegistryDestinationErrors(),))(broken, operation="PutBlob")
        assert verdict.action is Action.REQUEUE_LAYER
        reopened = await open_upload(client, REPO, where="blob")
        assert reopened.location is not None
        await put_blob(
            client, REPO, reopened.location, digest=digest, data=streamed(blob), where="blob"
        )
        assert client.auth.tokens_fetched == 2
        assert await blob_exists(client, REPO, digest, where="blob")
        assert token_counts(registry) == (2, 1)
