"""What a destination repository holds under the tags a sync plans to write, asked cheaply.

- ECR: DescribeRepositories (does it exist, are its tags immutable), then BatchGetImage with
  up to 100 image ids per call. For both transports: ``--transport oci`` needs the API's
  credentials anyway, and one call answers a hundred tags where ``/v2/`` takes a HEAD each.
- ECR Public has no BatchGetImage: DescribeRepositories, then DescribeImageTags page by page
  (every tag of the repository, up to 1000 per page). ECR Public has no immutable tags.
- Any OCI registry (``docker://``): a manifest HEAD per tag; 404 is "not there".
- An OCI layout (``oci:``): its ``index.json``.

A missing repository or layout holds nothing. Errors that stop the whole question (wrong
credentials, an endpoint that never answers) raise a one-line
:class:`~layerhoist.errors.LayerhoistError`; a tag whose own HEAD fails is in
:attr:`Holdings.errors`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from layerhoist.destinations.base import DestinationOptions
from layerhoist.errors import LayerhoistError
from layerhoist.image import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from layerhoist.refs import DestinationRef, SourceRef
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.pacing import Pacer
from layerhoist.transfer.retry import Backoff, RetryBudget, retry_call
from layerhoist.transfer.verdicts import Classifier, ErrorTable, to_user_error

R = TypeVar("R")

#: BatchGetImage takes at most this many image ids per call.
MAX_IMAGE_IDS = 100
#: DescribeImageTags' largest page.
MAX_TAG_PAGE = 1000
#: What BatchGetImage may answer with: every manifest type a copy writes, so that ECR hands
#: back each manifest as stored instead of converting it.
ACCEPTED_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
#: ECR's settings of ``imageTagMutability`` under which a tag cannot be moved.
IMMUTABLE_SETTINGS = frozenset({"IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION"})
#: Manifest HEADs in flight at once to one OCI registry.
HEAD_CONCURRENCY = 8
#: The status of a manifest the registry does not have.
NOT_FOUND = 404


@dataclass(kw_only=True)
class Holdings:
    """The digests a destination repository holds under the tags asked about."""

    #: Tag -> digest, for the tags it holds.
    tags: dict[str, str] = field(default_factory=dict)
    #: Its tags cannot be moved to another image (ECR's IMMUTABLE repositories).
    immutable: bool = False
    #: Tag -> one line, for tags that could not be asked about.
    errors: dict[str, str] = field(default_factory=dict)


async def destination_holdings(
    ref: DestinationRef,
    tags: Sequence[str],
    *,
    config: PushConfig,
    options: DestinationOptions,
    pacer: Pacer | None = None,
) -> Holdings:
    """What ``ref`` (a repository, no tag) holds under ``tags``."""
    if not tags:
        return Holdings()
    if ref.transport == "oci":
        return await _layout_holdings(ref, tags)
    if ref.transport == "docker":
        return await _registry_holdings(ref, tags, config=config, options=options)
    return await _ecr_holdings(ref, tags, config=config, options=options, pacer=pacer)


async def _ask(
    fn: Callable[[], Awaitable[R]], *, subject: str, config: PushConfig, errors: ErrorTable
) -> R:
    """``fn()`` retried in place as the run's settings say; a failure is one line."""
    classify = Classifier((errors,))
    try:
        return await retry_call(
            fn,
            subject=subject,
            attempts=config.part_attempts,
            backoff=Backoff.from_config(config),
            budget=RetryBudget(config.retry_budget),
            classify=classify,
            retry_for=config.retry_for,
        )
    except LayerhoistError:
        raise
    except Exception as exc:
        raise to_user_error(classify(exc), subject=subject) from exc


async def _ecr_holdings(
    ref: DestinationRef,
    tags: Sequence[str],
    *,
    config: PushConfig,
    options: DestinationOptions,
    pacer: Pacer | None,
) -> Holdings:
    # Imported here: only ECR destinations load the AWS SDK.
    from botocore.exceptions import ClientError

    from layerhoist.destinations.ecr.destination import EcrDestination
    from layerhoist.destinations.ecr.errors import error_code

    subject = str(ref)
    async with EcrDestination(ref, config=config, options=options, pacer=pacer) as ecr:

        async def call(operation: str, **params: Any) -> dict[str, Any] | None:
            """One call; ``None`` when the repository does not exist."""

            async def once() -> dict[str, Any] | None:
                try:
                    return await ecr.call(operation, **params)
                except ClientError as exc:
                    if error_code(exc) == "RepositoryNotFoundException":
                        return None
                    raise

            return await _ask(once, subject=subject, config=config, errors=ecr.errors)

        described = await call("DescribeRepositories", repositoryNames=[ref.repository])
        if described is None:
            return Holdings()
        repositories = described.get("repositories") or [{}]
        holdings = Holdings(
            immutable=repositories[0].get("imageTagMutability") in IMMUTABLE_SETTINGS
        )
        wanted = list(dict.fromkeys(tags))
        if ref.service == "ecr-public":
            token: str | None = None
            while True:
                page = await call(
                    "DescribeImageTags",
                    repositoryName=ref.repository,
                    maxResults=MAX_TAG_PAGE,
                    **({"nextToken": token} if token else {}),
                )
                if page is None:
                    return Holdings()
                for detail in page.get("imageTagDetails", []):
                    digest = (detail.get("imageDetail") or {}).get("imageDigest")
                    if detail.get("imageTag") in wanted and digest:
                        holdings.tags[str(detail["imageTag"])] = str(digest)
                token = page.get("nextToken")
                if not token:
                    return holdings
        for start in range(0, len(wanted), MAX_IMAGE_IDS):
            batch = wanted[start : start + MAX_IMAGE_IDS]
            answer = await call(
                "BatchGetImage",
                repositoryName=ref.repository,
                imageIds=[{"imageTag": tag} for tag in batch],
                acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES),
            )
            if answer is None:
                return Holdings()
            for image in answer.get("images", []):
                image_id = image.get("imageId") or {}
                if image_id.get("imageTag") and image_id.get("imageDigest"):
                    holdings.tags[str(image_id["imageTag"])] = str(image_id["imageDigest"])
            for failure in answer.get("failures", []):
                tag = (failure.get("imageId") or {}).get("imageTag")
                if tag and failure.get("failureCode") != "ImageNotFound":
                    holdings.errors[str(tag)] = (
                        f"{subject}:{tag}: BatchGetImage: {failure.get('failureCode')}: "
                        f"{failure.get('failureReason')}"
                    )
        return holdings


async def _registry_holdings(
    ref: DestinationRef, tags: Sequence[str], *, config: PushConfig, options: DestinationOptions
) -> Holdings:
    from layerhoist.destinations.registry.destination import RegistryDestination
    from layerhoist.oci.errors import RegistryResponseError
    from layerhoist.oci.manifest import head_manifest

    holdings = Holdings()
    limiter = anyio.CapacityLimiter(HEAD_CONCURRENCY)
    async with RegistryDestination(ref, config=config, options=options) as registry:
        client = registry.client

        async def head(tag: str) -> None:
            label = f"{registry.target_name(tag)}"

            async def once() -> str | None:
                try:
                    found = await head_manifest(client, ref.repository, tag, where=label)
                except RegistryResponseError as exc:
                    if exc.status == NOT_FOUND:
                        return None
                    raise
                return found.digest

            async with limiter:
                try:
                    digest = await _ask(once, subject=label, config=config, errors=registry.errors)
                except LayerhoistError as exc:
                    holdings.errors[tag] = str(exc)
                    return
            if digest is not None:
                holdings.tags[tag] = digest

        async with anyio.create_task_group() as tg:
            for tag in dict.fromkeys(tags):
                tg.start_soon(head, tag)
    return holdings


async def _layout_holdings(ref: DestinationRef, tags: Sequence[str]) -> Holdings:
    from layerhoist.sources.oci_layout import OciLayoutSource

    assert ref.path is not None  # parse_destination sets it for every oci: reference
    if not await anyio.Path(ref.path / "index.json").exists():
        return Holdings()
    layout = OciLayoutSource(SourceRef("oci", ref.path, None))
    try:
        images = await layout.load()
    finally:
        await layout.aclose()
    wanted = set(tags)
    return Holdings(
        tags={
            image.tag: image.manifest.digest
            for image in images
            if image.tag is not None and image.tag in wanted
        }
    )
