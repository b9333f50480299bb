"""The ECR and ECR Public operations: parameters in, response documents or EcrError out.

Both services share one store; they differ in their target prefix, the operations
they offer and a few response shapes (ARNs, GetAuthorizationToken).

Upload rules, as the service applies them:

* parts of an upload are consecutive: a part must start right after the last byte
  received, else InvalidLayerPartException carrying ``lastValidByteReceived`` (``-1``
  when nothing was received, so a client resumes at ``lastValidByteReceived + 1``);
* a part larger than ``max_part_size``, or whose byte range does not match its length,
  is an InvalidLayerPartException too;
* at completion: no parts is EmptyUploadException; a non-final part under
  ``min_part_size`` is LayerPartTooSmallException; a digest other than the sha256 of
  the bytes received is InvalidLayerException; a layer the repository holds already is
  LayerAlreadyExistsException. After any of the last three the upload is gone;
* an upload id that is unknown, expired or of another repository is
  UploadNotFoundException.

ECR's account setting ``BLOB_MOUNTING`` (GetAccountSetting, PutAccountSetting; ``DISABLED``
unless ``blob_mounting`` starts it on) decides whether ``/v2/`` of the ``ecr`` flavor mounts
blobs across repositories; other account settings are not kept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread

from layerhoist.registry import validation as v
from layerhoist.registry.catalog import (
    Catalog,
    ImageRecord,
    Mutability,
    NewImage,
    RepositoryRecord,
)
from layerhoist.registry.errors import Code, EcrError
from layerhoist.registry.manifests import ManifestInfo, inspect_manifest
from layerhoist.registry.settings import RegistrySettings
from layerhoist.registry.simulation import Simulator
from layerhoist.registry.stats import RegistryStats
from layerhoist.registry.storage import BlobStore, Upload
from layerhoist.registry.wire import (
    BLOB_FIELD,
    Body,
    JsonLimits,
    parse_object,
    parse_part_body,
)

T = TypeVar("T")
Params = dict[str, Any]
Result = dict[str, Any]

#: GetAuthorizationToken's tokens last 12 hours at the service.
TOKEN_LIFETIME = 12 * 3600.0
#: Page size of the Describe*/List* operations when the caller gives no maxResults.
DEFAULT_PAGE = 100
MAX_PAGE = 1000
#: BatchCheckLayerAvailability and the batch image operations take at most this many ids.
MAX_BATCH = 100
LAYER_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: The layer APIs' image manifest limit (imageManifest is at most 4 MiB).
MAX_MANIFEST = 4 * 1024 * 1024
IMAGE_ID_FIELDS = ("imageDigest", "imageTag")
#: The account setting of ECR's cross-repository blob mounting, and its two values.
BLOB_MOUNTING = "BLOB_MOUNTING"
ENABLED, DISABLED = "ENABLED", "DISABLED"
#: The text inside a ``nextToken``: an offset in canonical decimal, of a sane length.
_OFFSET_RE = re.compile(r"0|[1-9][0-9]{0,17}")

SHARED_OPERATIONS = frozenset(
    {
        "BatchCheckLayerAvailability",
        "BatchDeleteImage",
        "CompleteLayerUpload",
        "CreateRepository",
        "DeleteRepository",
        "DescribeImages",
        "DescribeRepositories",
        "GetAuthorizationToken",
        "InitiateLayerUpload",
        "PutImage",
        "UploadLayerPart",
    }
)


@dataclass(frozen=True, kw_only=True)
class Service:
    """One of the two APIs served on the port."""

    name: str
    target_prefix: str
    operations: frozenset[str]


ECR_PUBLIC = Service(
    name="ecr-public",
    target_prefix="SpencerFrontendService",
    operations=SHARED_OPERATIONS | {"DescribeImageTags"},
)
ECR = Service(
    name="ecr",
    target_prefix="AmazonEC2ContainerRegistry_V20150921",
    operations=SHARED_OPERATIONS
    | {"ListImages", "BatchGetImage", "GetAccountSetting", "PutAccountSetting"},
)
SERVICES = {service.target_prefix: service for service in (ECR_PUBLIC, ECR)}


def resolve_target(target: str) -> tuple[Service | None, str]:
    """The service and operation an ``X-Amz-Target`` header names.

    The service is ``None`` when the target names no operation this registry serves;
    the operation is then the raw header (for counting).
    """
    prefix, _, operation = target.partition(".")
    service = SERVICES.get(prefix)
    if service is None or operation not in service.operations:
        return None, target or "<none>"
    return service, operation


def unknown_operation(target: str) -> EcrError:
    """The service's answer to a target it does not implement."""
    return EcrError(Code.UNKNOWN_OPERATION, f"Operation {target!r} is not supported.")


class EcrApi:
    """The operations of both services over one catalog and blob store."""

    def __init__(
        self,
        *,
        settings: RegistrySettings,
        catalog: Catalog,
        store: BlobStore,
        simulator: Simulator,
        stats: RegistryStats,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._store = store
        self._simulator = simulator
        self._stats = stats
        self._clock = clock
        self._wall_clock = wall_clock
        #: How deep and how many JSON arrays and objects a request body may hold.
        self.json_limits = JsonLimits(
            max_depth=settings.max_json_depth, max_containers=settings.max_json_containers
        )
        #: ``host:port`` the registry is reachable at (set once it listens): repositoryUri.
        self.registry_host = f"{settings.host}:{settings.port}"
        #: Passwords of the GetAuthorizationToken tokens issued -> expiry (wall clock), oldest
        #: first, at most ``oci_max_tokens``: ``/v2/`` of the ECR flavors accepts them.
        self._passwords: dict[str, float] = {}
        #: ECR's ``BLOB_MOUNTING`` account setting: whether ``/v2/`` mounts across repositories.
        self.blob_mounting = settings.blob_mounting
        self._handlers: Mapping[str, Callable[[Service, Params], Awaitable[Result]]] = {
            "BatchCheckLayerAvailability": self._batch_check_layer_availability,
            "BatchDeleteImage": self._batch_delete_image,
            "BatchGetImage": self._batch_get_image,
            "CompleteLayerUpload": self._complete_layer_upload,
            "CreateRepository": self._create_repository,
            "DeleteRepository": self._delete_repository,
            "DescribeImageTags": self._describe_image_tags,
            "DescribeImages": self._describe_images,
            "DescribeRepositories": self._describe_repositories,
            "GetAccountSetting": self._get_account_setting,
            "PutAccountSetting": self._put_account_setting,
            "GetAuthorizationToken": self._get_authorization_token,
            "InitiateLayerUpload": self._initiate_layer_upload,
            "ListImages": self._list_images,
            "PutImage": self._put_image,
        }

    async def call(self, service: Service, operation: str, body: Body) -> Result:
        """Run ``operation`` of ``service`` on a raw JSON request body."""
        if operation == "UploadLayerPart":
            params, data = await anyio.to_thread.run_sync(parse_part_body, body, self.json_limits)
            return await self._upload_layer_part(service, params, data)
        params = parse_object(body.contents(), self.json_limits)
        return await self._handlers[operation](service, params)

    # Shared helpers

    def _check_registry(self, service: Service, params: Params) -> None:
        registry_id = params.get("registryId")
        if registry_id is not None and registry_id != self._settings.account_id:
            code = Code.REGISTRY_NOT_FOUND if service is ECR_PUBLIC else Code.REPOSITORY_NOT_FOUND
            raise EcrError(code, f"The registry with id '{registry_id}' does not exist")

    def _repository(self, service: Service, params: Params) -> RepositoryRecord:
        self._check_registry(service, params)
        name = v.repository_name(params)
        record = self._catalog.repository(name)
        if record is None:
            raise EcrError(
                Code.REPOSITORY_NOT_FOUND,
                f"The repository with name '{name}' does not exist in the registry with id "
                f"'{self._settings.account_id}'",
            )
        return record

    def _repository_document(self, service: Service, record: RepositoryRecord) -> Result:
        if service is ECR_PUBLIC:
            arn = f"arn:aws:ecr-public::{self._settings.account_id}:repository/{record.name}"
        else:
            arn = (
                f"arn:aws:ecr:{self._settings.region}:{self._settings.account_id}"
                f":repository/{record.name}"
            )
        document: Result = {
            "repositoryArn": arn,
            "registryId": self._settings.account_id,
            "repositoryName": record.name,
            "repositoryUri": f"{self.registry_host}/{record.name}",
            "createdAt": record.created_at,
        }
        if service is ECR:
            document["imageTagMutability"] = record.mutability.value
            document["imageScanningConfiguration"] = {"scanOnPush": False}
            document["encryptionConfiguration"] = {"encryptionType": "AES256"}
        return document

    def find_upload(self, repository: str, params: Params) -> Upload:
        """The open upload ``params["uploadId"]`` of ``repository``, or UploadNotFoundException."""
        upload_id = v.upload_id(params)
        upload = self._store.get_upload(upload_id)
        if upload is not None and self._expired(upload):
            self._store.discard_upload(upload)
            upload = None
        if upload is None or upload.repository != repository:
            raise EcrError(
                Code.UPLOAD_NOT_FOUND,
                f"Upload with id '{upload_id}' is not found in repository '{repository}'",
            )
        self._store.touch(upload, now=self._clock())
        return upload

    def check_open(self, upload: Upload) -> None:
        """UploadNotFoundException unless ``upload`` is still open."""
        # Called with the upload's lock held: a request that waited for the lock may find
        # the upload completed or discarded by the one before it.
        if self._store.get_upload(upload.upload_id) is not upload:
            raise EcrError(
                Code.UPLOAD_NOT_FOUND,
                f"Upload with id '{upload.upload_id}' is not found in repository "
                f"'{upload.repository}'",
            )

    def _expiry(self) -> float:
        """Seconds an upload may stay idle: the simulated expiry if set, else the idle limit."""
        simulated = self._simulator.settings.upload_expiry
        return self._settings.upload_idle_limit if simulated is None else simulated

    def _expired(self, upload: Upload) -> bool:
        return self._clock() - upload.last_activity > self._expiry()

    def discard_idle_uploads(self) -> int:
        """Discard the uploads idle past their expiry, files included; returns how many.

        An upload whose part is being written is busy, not idle, and is left alone.
        """
        discarded = 0
        for upload in self._store.idle_uploads(before=self._clock() - self._expiry()):
            if not upload.lock.locked():
                self._store.discard_upload(upload)
                discarded += 1
        return discarded

    def _paged(
        self, key: str, items: Sequence[T], params: Params, render: Callable[[T], object]
    ) -> Result:
        """One page of ``items`` under ``key``, with a ``nextToken`` when more follow."""
        limit = params.get("maxResults", DEFAULT_PAGE)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise v.invalid("maxResults", f"must be an integer within 1..{MAX_PAGE}")
        token = params.get("nextToken")
        offset = 0 if token is None else _page_offset(token)
        following = offset + limit
        result: Result = {key: [render(item) for item in items[offset:following]]}
        if following < len(items):
            result["nextToken"] = base64.urlsafe_b64encode(str(following).encode()).decode()
        return result

    def _image_ids(self, params: Params) -> list[Mapping[str, object]]:
        ids = v.required_list(params, "imageIds")
        if len(ids) > MAX_BATCH:
            raise v.invalid("imageIds", f"at most {MAX_BATCH} ids")
        for image_id in ids:
            if not isinstance(image_id, Mapping):
                raise v.invalid("imageIds", "each id must be an object")
        return [image_id for image_id in ids if isinstance(image_id, Mapping)]

    def _find_image(
        self, repository: str, image_id: Mapping[str, object]
    ) -> tuple[ImageRecord | None, dict[str, str] | None]:
        """Resolve an ImageIdentifier: the image, or a failure document."""
        digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
        failure_id = {
            k: str(val) for k, val in image_id.items() if k in ("imageDigest", "imageTag")
        }

        def failure(code: str, reason: str) -> dict[str, Any]:
            return {"imageId": failure_id, "failureCode": code, "failureReason": reason}

        if digest is None and tag is None:
            return None, failure("MissingDigestAndTag", "Image id needs a digest or a tag")
        if digest is not None and (not isinstance(digest, str) or not v.is_digest(digest)):
            return None, failure("InvalidImageDigest", "Invalid image digest")
        if tag is not None and (not isinstance(tag, str) or not v.is_tag(tag)):
            return None, failure("InvalidImageTag", "Invalid image tag")
        if tag is not None:
            tagged = self._catalog.resolve_tag(repository, str(tag))
            if tagged is None:
                return None, failure("ImageNotFound", "Requested image not found")
            if digest is not None and digest != tagged:
                return None, failure("ImageTagDoesNotMatchDigest", "Tag names another image")
            digest = tagged
        image = self._catalog.image(repository, str(digest))
        if image is None:
            return None, failure("ImageNotFound", "Requested image not found")
        return image, None

    def _image_detail(self, image: ImageRecord) -> Result:
        detail: Result = {
            "registryId": self._settings.account_id,
            "repositoryName": image.repository,
            "imageDigest": image.digest,
            "imageSizeInBytes": image.size,
            "imagePushedAt": image.pushed_at,
            "imageManifestMediaType": image.media_type,
        }
        if image.tags:
            detail["imageTags"] = list(image.tags)
        if image.artifact_media_type is not None:
            detail["artifactMediaType"] = image.artifact_media_type
        return detail

    # Repositories

    async def _create_repository(self, service: Service, params: Params) -> Result:
        self._check_registry(service, params)
        name = v.repository_name(params)
        mutability = Mutability.MUTABLE
        if service is ECR:
            requested = v.optional_str(params, "imageTagMutability") or Mutability.MUTABLE.value
            if requested not in Mutability.__members__:
                raise v.invalid("imageTagMutability", "this registry supports MUTABLE, IMMUTABLE")
            mutability = Mutability(requested)
        record = self._catalog.create_repository(
            name, mutability=mutability, now=self._wall_clock()
        )
        if record is None:
            raise EcrError(
                Code.REPOSITORY_ALREADY_EXISTS,
                f"The repository with name '{name}' already exists in the registry with id "
                f"'{self._settings.account_id}'",
            )
        result: Result = {"repository": self._repository_document(service, record)}
        if service is ECR_PUBLIC:
            result["catalogData"] = {}
        return result

    async def _describe_repositories(self, service: Service, params: Params) -> Result:
        self._check_registry(service, params)
        names = v.optional_list(params, "repositoryNames")
        if names is None:
            records = self._catalog.repositories()
        else:
            records = [self._repository(service, {"repositoryName": name}) for name in names]
        return self._paged(
            "repositories", records, params, lambda r: self._repository_document(service, r)
        )

    async def _delete_repository(self, service: Service, params: Params) -> Result:
        record = self._repository(service, params)
        force = params.get("force", False)
        if not isinstance(force, bool):
            raise v.invalid("force", "must be a boolean")
        if not force and self._catalog.image_count(record.name):
            raise EcrError(
                Code.REPOSITORY_NOT_EMPTY,
                f"The repository with name '{record.name}' in registry with id "
                f"'{self._settings.account_id}' cannot be deleted because it still contains "
                "images",
            )
        for upload in self._store.uploads():
            if upload.repository == record.name:
                self._store.discard_upload(upload)
        self._catalog.delete_repository(record.name)
        return {"repository": self._repository_document(service, record)}

    # Layers

    async def _batch_check_layer_availability(self, service: Service, params: Params) -> Result:
        record = self._repository(service, params)
        digests = v.required_list(params, "layerDigests")
        if not 1 <= len(digests) <= MAX_BATCH:
            raise v.invalid("layerDigests", f"must hold 1..{MAX_BATCH} digests")
        layers: list[Result] = []
        failures: list[Result] = []
        for digest in digests:
            if not isinstance(digest, str) or not v.is_digest(digest):
                failures.append(
                    {
                        "layerDigest": str(digest),
                        "failureCode": "InvalidLayerDigest",
                        "failureReason": "Invalid layer digest",
                    }
                )
                continue
            size = self._catalog.blob_size(record.name, digest)
            if size is None:
                failures.append(
                    {
                        "layerDigest": digest,
                        "failureCode": "MissingLayerDigest",
                        "failureReason": "Layer digest not found",
                    }
                )
                layers.append({"layerDigest": digest, "layerAvailability": "UNAVAILABLE"})
            else:
                layers.append(
                    {
                        "layerDigest": digest,
                        "layerAvailability": "AVAILABLE",
                        "layerSize": size,
                        "mediaType": LAYER_MEDIA_TYPE,
                    }
                )
        return {"layers": layers, "failures": failures}

    async def _initiate_layer_upload(self, service: Service, params: Params) -> Result:
        record = self._repository(service, params)
        # Between two sweeps too, abandoned uploads must not pile up on disk; only the idle
        # ones are visited, so this stays cheap however many uploads are open.
        self.discard_idle_uploads()
        upload = self._store.new_upload(record.name, now=self._clock())
        return {"uploadId": upload.upload_id, "partSize": self._settings.part_size}

    async def _upload_layer_part(self, service: Service, params: Params, data: bytes) -> Result:
        record = self._repository(service, params)
        first = v.required_int(params, "partFirstByte")
        last = v.required_int(params, "partLastByte")
        if params.get(BLOB_FIELD) != "":
            raise v.invalid(BLOB_FIELD, "a base64 string is required")
        upload = self.find_upload(record.name, params)
        async with upload.lock:
            self.check_open(upload)
            self._check_part(upload, first=first, last=last, length=len(data))
            stored = self._simulator.corrupt(data)
            if stored is not data:
                self._stats.parts_corrupted += 1
            await self._store.append(upload, stored)
            self._store.touch(upload, now=self._clock())
        self._stats.parts_received += 1
        self._stats.part_bytes_received += len(data)
        return {
            "registryId": self._settings.account_id,
            "repositoryName": record.name,
            "uploadId": upload.upload_id,
            "lastByteReceived": last,
        }

    def _check_part(self, upload: Upload, *, first: int, last: int, length: int) -> None:
        problem = None
        if first != upload.size:
            problem = f"part starts at byte {first}, expected {upload.size}"
        elif last < first or last - first + 1 != length:
            problem = f"range {first}-{last} does not match the part's {length} bytes"
        elif length > self._settings.max_part_size:
            problem = f"part of {length} bytes exceeds {self._settings.max_part_size} bytes"
        if problem is not None:
            raise EcrError(
                Code.INVALID_LAYER_PART,
                f"The layer part is not valid: {problem}",
                fields={
                    "registryId": self._settings.account_id,
                    "repositoryName": upload.repository,
                    "uploadId": upload.upload_id,
                    "lastValidByteReceived": upload.size - 1,
                },
            )

    async def _complete_layer_upload(self, service: Service, params: Params) -> Result:
        record = self._repository(service, params)
        digests = v.required_list(params, "layerDigests")
        if len(digests) != 1:
            raise v.invalid("layerDigests", "exactly one digest is required")
        digest = v.digest(digests[0], "layerDigests")
        upload = self.find_upload(record.name, params)
        async with upload.lock:
            self.check_open(upload)
            if not upload.part_sizes:
                raise EcrError(Code.EMPTY_UPLOAD, f"The upload '{upload.upload_id}' has no parts")
            small = [s for s in upload.part_sizes[:-1] if s < self._settings.min_part_size]
            if small:
                self._store.discard_upload(upload)
                raise EcrError(
                    Code.LAYER_PART_TOO_SMALL,
                    f"Layer part size must be at least {self._settings.min_part_size} bytes "
                    f"(a non-final part has {small[0]})",
                )
            if upload.digest != digest:
                self._store.discard_upload(upload)
                raise EcrError(
                    Code.INVALID_LAYER,
                    f"The layer digest calculated for the uploaded layer '{upload.digest}' does "
                    f"not match the digest provided '{digest}'",
                )
            if self._catalog.blob_size(record.name, digest) is not None:
                self._store.discard_upload(upload)
                raise EcrError(
                    Code.LAYER_ALREADY_EXISTS,
                    f"The layer '{digest}' already exists in the repository '{record.name}'",
                )
            size = self._store.commit(upload)
        self._catalog.add_blob(record.name, digest, size)
        self._stats.layers_completed += 1
        return {
            "registryId": self._settings.account_id,
            "repositoryName": record.name,
            "uploadId": upload.upload_id,
            "layerDigest": digest,
        }

    # Images

    async def _put_image(self, service: Service, params: Params) -> Result:
        record = self._repository(service, params)
        text = v.required_str(params, "imageManifest")
        raw = text.encode()
        if not 1 <= len(raw) <= MAX_MANIFEST:
            raise v.invalid("imageManifest", f"must be 1..{MAX_MANIFEST} bytes")
        tag = params.get("imageTag")
        if tag is not None:
            tag = v.tag(tag)
        digest, info = self.store_image(
            record,
            raw,
            media_type=v.optional_str(params, "imageManifestMediaType"),
            tag=tag,
            claimed_digest=v.optional_str(params, "imageDigest"),
        )
        image_id = {"imageDigest": digest}
        if tag is not None:
            image_id["imageTag"] = tag
        return {
            "image": {
                "registryId": self._settings.account_id,
                "repositoryName": record.name,
                "imageId": image_id,
                "imageManifest": text,
                "imageManifestMediaType": info.media_type,
            }
        }

    def store_image(
        self,
        record: RepositoryRecord,
        raw: bytes,
        *,
        media_type: str | None,
        tag: str | None,
        claimed_digest: str | None,
    ) -> tuple[str, ManifestInfo]:
        """Check a manifest as PutImage does and store it; its digest and what it holds.

        Shared by PutImage and the ``/v2/`` manifest PUT, so both refuse the same
        manifests (EcrError: the ``/v2/`` side maps the codes to distribution's).
        """
        digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
        if claimed_digest is not None and claimed_digest != digest:
            raise EcrError(
                Code.IMAGE_DIGEST_DOES_NOT_MATCH,
                f"The digest '{claimed_digest}' does not match the manifest's digest '{digest}'",
            )
        info = inspect_manifest(raw, media_type)
        missing_blobs = self._catalog.missing_blobs(record.name, info.blobs)
        if missing_blobs:
            raise EcrError(
                Code.LAYERS_NOT_FOUND,
                f"Layers with digests {missing_blobs} required for pushing image into "
                f"repository '{record.name}' do not exist",
            )
        missing_images = self._catalog.missing_images(record.name, info.children)
        if missing_images:
            raise EcrError(
                Code.REFERENCED_IMAGES_NOT_FOUND,
                f"Images with digests {missing_images} referenced by the manifest do not exist "
                f"in repository '{record.name}'",
            )
        self._check_tag_rules(record, digest=digest, tag=tag)
        self._catalog.put_image(
            NewImage(
                repository=record.name,
                digest=digest,
                manifest=raw,
                media_type=info.media_type,
                artifact_media_type=info.artifact_media_type,
                size=info.size,
                children=info.children,
                blobs=info.blobs,
            ),
            tag=tag,
            now=self._wall_clock(),
        )
        self._stats.images_put += 1
        return digest, info

    def _check_tag_rules(self, record: RepositoryRecord, *, digest: str, tag: str | None) -> None:
        exists = self._catalog.image(record.name, digest) is not None
        current = None if tag is None else self._catalog.resolve_tag(record.name, tag)
        if exists and (tag is None or current == digest):
            raise EcrError(
                Code.IMAGE_ALREADY_EXISTS,
                f"Image with digest '{digest}'"
                + ("" if tag is None else f" and tag '{tag}'")
                + " already exists in the repository",
            )
        if current is not None and current != digest and record.mutability is Mutability.IMMUTABLE:
            raise EcrError(
                Code.IMAGE_TAG_ALREADY_EXISTS,
                f"The image tag '{tag}' already exists in the '{record.name}' repository and "
                "cannot be overwritten because the repository is immutable.",
            )

    async def _describe_images(self, service: Service, params: Params) -> Result:
        record = self._repository(service, params)
        if params.get("imageIds") is None:
            images = self._catalog.images(record.name)
            status = _tag_status(params)
            images = [i for i in images if status == "ANY" or bool(i.tags) == (status == "TAGGED")]
        else:
            images = []
            for image_id in self._image_ids(params):
                image, failure = self._find_image(record.name, image_id)
                if image is None:
                    reason = failure["failureReason"] if failure else "not found"
                    raise EcrError(
                        Code.IMAGE_NOT_FOUND,
                        f"The image with imageId {dict(image_id)} does not exist within the "
                        f"repository '{record.name}': {reason}",
                    )
                images.append(image)
        return self._paged("imageDetails", images, params, self._image_detail)

    async def _describe_image_tags(self, service: Service, params: Params) -> Result:
        record = self._repository(service, params)
        details = []
        for tag in self._catalog.tags(record.name):
            image = self._catalog.image(record.name, tag.digest)
            if image is None:
                continue
            details.append(
                {
                    "imageTag": tag.tag,
                    "createdAt": tag.created_at,
                    "imageDetail": {
                        "imageDigest": image.digest,
                        "imageSizeInBytes": image.size,
                        "imagePushedAt": image.pushed_at,
                        "imageManifestMediaType": image.media_type,
                        **(
                            {"artifactMediaType": image.artifact_media_type}
                            if image.artifact_media_type
                            else {}
                        ),
                    },
                }
            )
        return self._paged("imageTagDetails", details, params, _same)

    async def _list_images(self, service: Service, params: Params) -> Result:
        record = self._repository(service, params)
        status = _tag_status(params)
        ids: list[Result] = []
        for image in self._catalog.images(record.name):
            if image.tags and status != "UNTAGGED":
                ids.extend({"imageDigest": image.digest, "imageTag": t} for t in image.tags)
            elif not image.tags and status != "TAGGED":
                ids.append({"imageDigest": image.digest})
        return self._paged("imageIds", ids, params, _same)

    async def _batch_get_image(self, service: Service, params: Params) -> Result:
        record = self._repository(service, params)
        images: list[Result] = []
        failures: list[Result] = []
        for image_id in self._image_ids(params):
            image, failure = self._find_image(record.name, image_id)
            if image is None:
                failures.append(failure or {})
                continue
            images.append(
                {
                    "registryId": self._settings.account_id,
                    "repositoryName": record.name,
                    "imageId": {k: str(val) for k, val in image_id.items()}
                    | {"imageDigest": image.digest},
                    "imageManifest": image.manifest.decode(),
                    "imageManifestMediaType": image.media_type,
                }
            )
        return {"images": images, "failures": failures}

    async def _batch_delete_image(self, service: Service, params: Params) -> Result:
        record = self._repository(service, params)
        deleted: list[Result] = []
        failures: list[Result] = []
        for image_id in self._image_ids(params):
            image, failure = self._find_image(record.name, image_id)
            if image is None:
                failures.append(failure or {})
                continue
            tag = image_id.get("imageTag")
            if isinstance(tag, str):
                remaining = set(image.tags) - {tag}
                if not remaining and self._catalog.parents(record.name, image.digest):
                    failures.append(_referenced(image_id))
                    continue
                self._catalog.delete_tag(record.name, tag)
                deleted.append({"imageDigest": image.digest, "imageTag": tag})
                continue
            if self._catalog.parents(record.name, image.digest):
                failures.append(_referenced(image_id))
                continue
            self._catalog.delete_image(record.name, image.digest)
            deleted.extend({"imageDigest": image.digest, "imageTag": t} for t in image.tags)
            if not image.tags:
                deleted.append({"imageDigest": image.digest})
        return {"imageIds": deleted, "failures": failures}

    # Account settings

    async def _get_account_setting(self, service: Service, params: Params) -> Result:
        name = _account_setting_name(params)
        return {"name": name, "value": ENABLED if self.blob_mounting else DISABLED}

    async def _put_account_setting(self, service: Service, params: Params) -> Result:
        name = _account_setting_name(params)
        value = v.required_str(params, "value")
        if value not in (ENABLED, DISABLED):
            raise v.invalid("value", f"must be {ENABLED} or {DISABLED}")
        self.blob_mounting = value == ENABLED
        return {"name": name, "value": value}

    # Authentication

    async def _get_authorization_token(self, service: Service, params: Params) -> Result:
        password = str(uuid.uuid4())
        token = base64.b64encode(f"AWS:{password}".encode()).decode()
        expires = self._wall_clock() + TOKEN_LIFETIME
        while self._passwords and (
            len(self._passwords) >= self._settings.oci_max_tokens
            or next(iter(self._passwords.values())) <= self._wall_clock()
        ):
            del self._passwords[next(iter(self._passwords))]
        self._passwords[password] = expires
        if service is ECR_PUBLIC:
            return {"authorizationData": {"authorizationToken": token, "expiresAt": expires}}
        return {
            "authorizationData": [
                {
                    "authorizationToken": token,
                    "expiresAt": expires,
                    "proxyEndpoint": f"http://{self.registry_host}",
                }
            ]
        }

    def valid_password(self, password: str) -> bool:
        """Whether GetAuthorizationToken issued ``password`` and its token has not expired."""
        expires = self._passwords.get(password)
        return expires is not None and expires > self._wall_clock()


def _page_offset(token: object) -> int:
    """The offset a ``nextToken`` of :meth:`EcrApi._paged` carries; refused unless it issued it."""
    try:
        text = base64.urlsafe_b64decode(str(token)).decode("ascii")
    except (ValueError, binascii.Error):
        text = ""
    # Only the canonical decimal form it writes: no sign (``-1`` would page from the end),
    # no spaces, no leading zeros, no digits ``int`` takes but ASCII lacks.
    if _OFFSET_RE.fullmatch(text) is None:
        raise v.invalid("nextToken", "not a token this registry issued")
    return int(text)


def _account_setting_name(params: Params) -> str:
    name = v.required_str(params, "name")
    if name != BLOB_MOUNTING:
        raise v.invalid("name", f"this registry keeps only {BLOB_MOUNTING}")
    return name


def _same(item: Result) -> Result:
    return item


def _tag_status(params: Params) -> str:
    status_filter = params.get("filter") or {}
    status = status_filter.get("tagStatus", "ANY") if isinstance(status_filter, dict) else None
    if status not in ("ANY", "TAGGED", "UNTAGGED"):
        raise v.invalid("filter.tagStatus", "must be TAGGED, UNTAGGED or ANY")
    return str(status)


def _referenced(image_id: Mapping[str, object]) -> Result:
    return {
        "imageId": {k: str(val) for k, val in image_id.items()},
        "failureCode": "ImageReferencedByManifestList",
        "failureReason": "The image is referenced by a manifest list in the repository",
    }
