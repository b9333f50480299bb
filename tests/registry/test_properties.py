"""Properties of the embedded registry under arbitrary input (issue 9, "Done when").

Arbitrary JSON bodies, targets, names, digests, paths and query strings go to every route of a
registry running as ``python -m layerhoist.registry``: the server never answers 500, and a
normal push works afterwards. Examples are few and the server is shared, to stay quick.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EcrSequences, sha256_digest

PART = 1024
REPO = "prop/app"
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0
LISTENING = re.compile(r"listening on http://([0-9.]+):(\d+)")
EXAMPLES = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OPERATIONS = [
    "BatchCheckLayerAvailability",
    "BatchDeleteImage",
    "BatchGetImage",
    "CompleteLayerUpload",
    "CreateRepository",
    "DeleteRepository",
    "DescribeImageTags",
    "DescribeImages",
    "DescribeRepositories",
    "GetAuthorizationToken",
    "InitiateLayerUpload",
    "ListImages",
    "PutImage",
    "UploadLayerPart",
]
PREFIXES = ["SpencerFrontendService.", "AmazonEC2ContainerRegistry_V20150921."]
#: The simulation as it starts; restored after every arbitrary change through the admin API.
NO_SIMULATION = {
    "latency_ms": 0,
    "bandwidth": None,
    "quotas": None,
    "fault_rate": 0.0,
    "drop_rate": 0.0,
    "corrupt_rate": 0.0,
    "upload_expiry": None,
}

Server = tuple[str, int]


def request(
    server: Server, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request on a connection of its own; the status and the body."""
    connection = http.client.HTTPConnection(*server, timeout=REQUEST_TIMEOUT)
    try:
        connection.request(
            method, path, body=body, headers={"Connection": "close", **(headers or {})}
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def ecr_call(server: Server, target: str, body: bytes) -> tuple[int, bytes]:
    return request(
        server,
        "POST",
        "/",
        body,
        {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A registry process with small parts, a repository ``REPO`` and one upload in it."""
    data_dir: Path = tmp_path_factory.mktemp("properties")
    command = [sys.executable, "-m", "layerhoist.registry", "--data-dir", str(data_dir)]
    sizes = ["--part-size", "1KiB", "--min-part-size", "1KiB", "--max-part-size", "1KiB"]
    process = subprocess.Popen([*command, *sizes], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        match = LISTENING.match(process.stdout.readline())
        assert match is not None, "the registry did not start"
        address = (match[1], int(match[2]))
        prefix = PREFIXES[0]
        ecr_call(
            address, prefix + "CreateRepository", json.dumps({"repositoryName": REPO}).encode()
        )
        yield address
    finally:
        process.terminate()
        process.wait(timeout=START_TIMEOUT)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
names = st.sampled_from([REPO, "prop/other", "", "a", "../x"]) | st.text(max_size=40)
digests = (
    st.sampled_from([sha256_digest(b""), "sha256:" + "A" * 64, "md5:00"])
    | st.builds(lambda data: sha256_digest(data), st.binary(max_size=8))
    | st.text(max_size=80)
)
small_ints = st.integers(min_value=-2, max_value=3 * PART)
parameters = st.fixed_dictionaries(
    {},
    optional={
        "repositoryName": names | json_values,
        "registryId": st.sampled_from(["123456789012", "000000000000"]) | json_values,
        "layerDigests": st.lists(digests, max_size=3) | json_values,
        "uploadId": st.uuids().map(str) | json_values,
        "partFirstByte": small_ints | json_values,
        "partLastByte": small_ints | json_values,
        "layerPartBlob": st.binary(max_size=PART + 2).map(lambda b: base64.b64encode(b).decode())
        | json_values,
        "imageManifest": json_values.map(json.dumps) | json_values,
        "imageTag": st.text(max_size=10) | json_values,
        "imageDigest": digests | json_values,
        "imageIds": st.lists(
            st.fixed_dictionaries({}, optional={"imageDigest": digests, "imageTag": st.text()}),
            max_size=3,
        )
        | json_values,
        "maxResults": st.integers(min_value=-1, max_value=2000) | json_values,
        "nextToken": st.integers(min_value=-3, max_value=3).map(
            lambda offset: base64.urlsafe_b64encode(str(offset).encode()).decode()
        )
        | st.text(max_size=12)
        | json_values,
        "force": json_values,
        "filter": json_values,
    },
)
#: Arrays or objects nested up to far beyond any recursion limit.
nested = st.builds(
    lambda depth, opener: opener * depth,
    st.integers(min_value=1, max_value=200_000),
    st.sampled_from([b"[", b'{"a":', b"[{}, "]),
)
bodies = (
    parameters.map(lambda document: json.dumps(document).encode())
    | json_values.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=200)
    | nested
)
targets = st.builds(
    lambda prefix, op: prefix + op, st.sampled_from(PREFIXES), st.sampled_from(OPERATIONS)
)
any_targets = targets | st.text(max_size=40).filter(lambda text: text.isprintable())


@EXAMPLES
@given(target=any_targets, body=bodies)
def test_ecr_api_never_answers_500(server: Server, target: str, body: bytes) -> None:
    status, answer = ecr_call(server, target.encode("ascii", "replace").decode(), body)
    assert status != 500, answer
    assert "__type" in json.loads(answer) or status == 200


def path_part(text: str) -> str:
    return quote(text, safe="")


#: Text that looks like a count: digits of any script, signs, exponents.
numberish = st.text(
    alphabet=st.characters(categories=["Nd", "No"]) | st.sampled_from("0123456789-+e"),
    min_size=1,
    max_size=4,
)
oci_paths = st.one_of(
    st.builds(
        lambda name, reference: f"/v2/{name}/manifests/{reference}",
        names.map(lambda n: quote(n, safe="/")),
        (digests | st.text(max_size=20)).map(path_part),
    ),
    st.builds(
        lambda name, digest: f"/v2/{name}/blobs/{digest}",
        names.map(lambda n: quote(n, safe="/")),
        digests.map(path_part),
    ),
    st.builds(
        lambda name, query: f"/v2/{name}/tags/list?{query}",
        names.map(lambda n: quote(n, safe="/")),
        st.builds(lambda n, q: f"n={n}&{q}", numberish.map(path_part), st.text(max_size=20)).map(
            lambda q: quote(q, safe="=&%")
        ),
    ),
    st.builds(
        lambda count, last: f"/v2/_catalog?n={count}&last={last}",
        (numberish | st.text(max_size=8)).map(path_part),
        st.text(max_size=8).map(path_part),
    ),
    st.text(max_size=60).map(lambda text: "/" + quote(text, safe="/?=&")),
)


@EXAMPLES
@given(path=oci_paths, method=st.sampled_from(["GET", "HEAD"]))
def test_read_side_and_unknown_paths_never_answer_500(
    server: Server, path: str, method: str
) -> None:
    status, _ = request(server, method, path)
    assert status != 500


upload_ids = st.one_of(
    st.uuids().map(str),
    st.text(max_size=40).map(path_part),
)
write_paths = st.one_of(
    st.builds(
        lambda name, query: f"/v2/{name}/blobs/uploads/?{query}",
        names.map(lambda n: quote(n, safe="/")),
        st.builds(
            lambda key, value: f"{key}={value}",
            st.sampled_from(["digest", "mount", "from", "n"]),
            (digests | names | st.text(max_size=20)).map(lambda t: quote(t, safe="")),
        ),
    ),
    st.builds(
        lambda upload, digest: f"/v2/{REPO}/blobs/uploads/{upload}?digest={digest}",
        upload_ids,
        digests.map(lambda t: quote(t, safe="")),
    ),
    st.builds(
        lambda name, reference: f"/v2/{name}/manifests/{reference}",
        names.map(lambda n: quote(n, safe="/")),
        (digests | st.text(max_size=20)).map(path_part),
    ),
)
write_headers = st.dictionaries(
    st.sampled_from(["Content-Range", "Content-Type", "Authorization", "Accept", "Range"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    max_size=3,
)


@settings(EXAMPLES, max_examples=80)
@given(
    path=write_paths,
    method=st.sampled_from(["POST", "PATCH", "PUT", "DELETE", "OPTIONS"]),
    body=bodies,
    headers=write_headers,
)
def test_write_side_never_answers_500(
    server: Server, path: str, method: str, body: bytes, headers: dict[str, str]
) -> None:
    status, _ = request(server, method, path, body, headers)
    assert status != 500


@settings(EXAMPLES, max_examples=60)
@given(
    changes=st.dictionaries(
        st.sampled_from([*NO_SIMULATION, "seed", "unknown"]), json_values, max_size=3
    )
    | json_values,
    raw=st.none() | st.binary(max_size=100),
)
def test_admin_endpoint_never_answers_500(server: Server, changes: Any, raw: bytes | None) -> None:
    body = raw if raw is not None else json.dumps(changes).encode()
    try:
        status, answer = request(server, "POST", "/_layerhoist/simulation", body)
        assert status in (200, 400), answer
        status, _ = request(server, "GET", "/_layerhoist/stats")
        assert status == 200
    finally:
        restore = json.dumps(NO_SIMULATION).encode()
        assert request(server, "POST", "/_layerhoist/simulation", restore)[0] == 200


@pytest.mark.anyio
async def test_a_normal_push_works_afterwards(
    server: Server, ecr_client: Any, ecr: EcrSequences
) -> None:
    endpoint = "http://{}:{}".format(*server)
    async with ecr_client(endpoint) as client:
        repository = f"after/{os.urandom(4).hex()}"
        await client.create_repository(repositoryName=repository)
        await ecr.push_image(
            client, repository, layers=[os.urandom(3 * PART + 7)], tag="v1", part_size=PART
        )
