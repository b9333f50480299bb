"""ECR's published limits: part sizes, batch sizes, request-rate quotas, the API's region.

Where the AWS documentation disagrees with itself, the stricter value is the default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from layerhoist.destinations.base import PartLimits
from layerhoist.refs import DestinationRef
from layerhoist.units import MiB

#: ECR rejects a non-final part smaller than this (LayerPartTooSmallException).
MIN_PART_SIZE = 5 * MiB
#: The largest part the ECR API model accepts for UploadLayerPart.
MAX_PART_SIZE = 20 * MiB
#: The quota pages say 10 MiB although the API model allows 20 MiB: the stricter value
#: bounds the part size unless the user asks for another.
PREFERRED_MAX_PART_SIZE = 10 * MiB
#: Parts travel base64-encoded inside a JSON body: 3 bytes become 4.
BASE64_EXPANSION = 4 / 3
#: The part rules of the ECR and ECR Public layer API.
PART_LIMITS = PartLimits(
    min_part_size=MIN_PART_SIZE,
    max_part_size=MAX_PART_SIZE,
    preferred_max_part_size=PREFERRED_MAX_PART_SIZE,
    payload_expansion=BASE64_EXPANSION,
)
#: An upload id as the API model writes it (a UUID): a journaled session of another form is
#: not one of this API's uploads.
UPLOAD_ID_PATTERN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
#: BatchCheckLayerAvailability takes at most this many digests per call.
MAX_DIGESTS_PER_CHECK = 100
#: ECR Public's API is served from us-east-1 only, whatever region the images serve from.
ECR_PUBLIC_REGION = "us-east-1"
#: Hosts under these domains are AWS's own endpoints, where the published quotas apply.
AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")

#: Published default request-rate quotas (requests/s per region) of each service, from
#: the AWS service-quota pages. Where the documentation disagrees, the stricter value
#: is used (ECR Public InitiateLayerUpload: 10, not 200).
PUBLISHED_QUOTAS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "ecr": MappingProxyType(
            {
                "BatchCheckLayerAvailability": 1000.0,
                "InitiateLayerUpload": 100.0,
                "UploadLayerPart": 500.0,
                "CompleteLayerUpload": 100.0,
                "PutImage": 10.0,
                "GetAuthorizationToken": 500.0,
            }
        ),
        "ecr-public": MappingProxyType(
            {
                "BatchCheckLayerAvailability": 200.0,
                "InitiateLayerUpload": 10.0,
                "UploadLayerPart": 260.0,
                "CompleteLayerUpload": 10.0,
                "PutImage": 10.0,
                "GetAuthorizationToken": 200.0,
            }
        ),
    }
)


def api_region(ref: DestinationRef, region: str | None) -> str | None:
    """The region whose API serves ``ref``: ECR Public's one, else ``region`` or the reference's.

    ``None`` leaves the choice to the AWS configuration (``AWS_REGION``, the profile).
    """
    if ref.service == "ecr-public":
        return ECR_PUBLIC_REGION
    return region or ref.region


#: ``docker push`` to ECR is translated into the layer API, whose quotas apply to it: each
#: ``/v2/`` step (as :mod:`layerhoist.destinations.registry` names it) -> the API operation
#: it counts as. A mount POST opens a session, as InitiateLayerUpload does.
OCI_STEP_QUOTAS: Mapping[str, str] = MappingProxyType(
    {
        "StartUpload": "InitiateLayerUpload",
        "MountBlob": "InitiateLayerUpload",
        "PatchBlob": "UploadLayerPart",
        "PutBlob": "CompleteLayerUpload",
        "PutManifest": "PutImage",
    }
)
#: Through ``/v2/``, every PATCH chunk but the last must be this large, as every API part
#: (``LayerPartTooSmallException``); one streamed PUT has no chunk to check.
MIN_CHUNK_SIZE = MIN_PART_SIZE
