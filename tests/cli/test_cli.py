"""The ``layerhoist`` command as users meet it: real processes, one-line errors, exit codes."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from commands import FAILED, INTERRUPTED, OK, USAGE, layerhoist, one_line_error, push_cli
from layerhoist.registry import EmbeddedRegistry, SimulationSettings
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.units import MiB

pytestmark = pytest.mark.anyio

SMALL_LAYER = 64 * 1024


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    path = tmp_path / "layout"
    write_oci_layout(path, images=2, layers_per_image=1, layer_size=SMALL_LAYER, seed=2)
    return path


async def test_push_json_report_and_exit_zero(
    aws_env: dict[str, str], layout: Path, registry: EmbeddedRegistry
) -> None:
    done = await push_cli(
        aws_env,
        f"oci:{layout}",
        "ecr-public:cli/app",
        registry.endpoint_url,
        "--create-repo",
        "--json",
    )
    assert done.returncode == OK, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert [i["destination"] for i in report["images"]] == [
        "ecr-public:cli/app:v1",
        "ecr-public:cli/app:v2",
    ]
    assert {b["status"] for b in report["blobs"]} == {"uploaded"}
    assert report["bytes_uploaded"] == sum(b["size"] for b in report["blobs"])
    assert set(report["retries"]) == {"total", "by_cause", "longest_seconds", "events"}
    assert "2/2 images pushed" in done.stderr.decode()
    assert aws_env["AWS_SECRET_ACCESS_KEY"] not in done.stdout.decode() + done.stderr.decode()


@pytest.mark.parametrize(
    ("source", "destination", "code", "names"),
    [
        ("nope:/x", "ecr-public:repo", USAGE, "nope:/x"),
        ("oci:{layout}", "ecr-public:Bad_Name", USAGE, "Bad_Name"),
        ("oci:{layout}", "quay.io/org/repo", USAGE, "quay.io"),
        ("oci:{tmp}/missing", "ecr-public:repo", FAILED, "missing"),
        ("oci:{layout}:v9", "ecr-public:repo", FAILED, "v9"),
        ("oci:{layout}", "ecr-public:repo:one-tag", USAGE, "2 images"),
    ],
)
async def test_bad_input_is_one_line_and_an_exit_code(
    tmp_path: Path,
    aws_env: dict[str, str],
    layout: Path,
    registry: EmbeddedRegistry,
    source: str,
    destination: str,
    code: int,
    names: str,
) -> None:
    done = await push_cli(
        aws_env,
        source.format(layout=layout, tmp=tmp_path),
        destination,
        registry.endpoint_url,
        "--create-repo",
    )
    assert done.returncode == code, done.stderr.decode()
    assert names in one_line_error(done)


async def test_broken_manifest_json(
    aws_env: dict[str, str], layout: Path, registry: EmbeddedRegistry
) -> None:
    (layout / "index.json").write_text("{not json")
    done = await push_cli(
        aws_env,
        f"oci:{layout}",
        "ecr-public:repo",
        registry.endpoint_url,
    )
    assert done.returncode == FAILED
    assert "index.json" in one_line_error(done)


async def test_unknown_repository_says_create_repo(
    aws_env: dict[str, str], layout: Path, registry: EmbeddedRegistry
) -> None:
    done = await push_cli(
        aws_env,
        f"oci:{layout}",
        "ecr-public:absent",
        registry.endpoint_url,
    )
    assert done.returncode == FAILED
    line = one_line_error(done)
    assert "RepositoryNotFoundException" in line
    assert "--create-repo" in line


async def test_ecr_without_a_region_says_so(
    aws_env: dict[str, str], layout: Path, registry: EmbeddedRegistry
) -> None:
    done = await push_cli(aws_env, f"oci:{layout}", "ecr:app", registry.endpoint_url)
    assert done.returncode == USAGE
    assert "ecr:app: no AWS region" in one_line_error(done)


async def test_invalid_part_size_is_a_usage_error(
    aws_env: dict[str, str], layout: Path, registry: EmbeddedRegistry
) -> None:
    done = await push_cli(
        aws_env,
        f"oci:{layout}",
        "ecr-public:repo",
        registry.endpoint_url,
        "--part-size",
        "1MiB",
    )
    assert done.returncode == USAGE
    assert "part_size" in one_line_error(done)


# Three CLI processes, each loading the AWS SDK before it is refused or pushes.
@pytest.mark.slow
async def test_missing_and_wrong_credentials(
    aws_env: dict[str, str], layout: Path, make_registry: Any
) -> None:
    async with make_registry(credentials={"AKIDREAL": "real-secret"}) as registry:
        args = ("push", f"oci:{layout}", "ecr-public:repo", "--endpoint-url", registry.endpoint_url)
        env = dict(aws_env)
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        missing = await layerhoist(env, *args)
        assert missing.returncode == FAILED
        assert "credentials" in one_line_error(missing).lower()

        wrong = await layerhoist(
            {**aws_env, "AWS_ACCESS_KEY_ID": "AKIDREAL", "AWS_SECRET_ACCESS_KEY": "guess"}, *args
        )
        assert wrong.returncode == FAILED
        line = one_line_error(wrong)
        assert "InvalidSignatureException" in line
        assert "guess" not in wrong.stderr.decode()

        right = await layerhoist(
            {**aws_env, "AWS_ACCESS_KEY_ID": "AKIDREAL", "AWS_SECRET_ACCESS_KEY": "real-secret"},
            *args,
            "--create-repo",
        )
        assert right.returncode == OK, right.stderr.decode()


async def _wait_for_bytes(registry: EmbeddedRegistry, process: Process) -> None:
    while True:
        received = registry.stats()["part_bytes_received"]
        assert isinstance(received, int)
        if received > 0:
            return
        assert process.returncode is None, "push ended before it could be interrupted"
        await anyio.sleep(0.05)


# A push slowed by the simulated bandwidth until it is interrupted, then a full rerun.
@pytest.mark.slow
async def test_ctrl_c_leaves_no_tag_and_a_rerun_completes(
    tmp_path: Path, aws_env: dict[str, str], make_registry: Any
) -> None:
    layout = tmp_path / "layout"
    tags = write_oci_layout(layout, images=3, layers_per_image=2, layer_size=6 * MiB, seed=4)
    slow = SimulationSettings(bandwidth=4 * MiB)
    async with make_registry(simulation=slow) as registry:
        args = [
            sys.executable,
            "-m",
            "layerhoist",
            "push",
            f"oci:{layout}",
            "ecr-public:interrupted",
            "--endpoint-url",
            registry.endpoint_url,
            "--create-repo",
        ]
        async with await anyio.open_process(args, env=aws_env) as process:
            with anyio.fail_after(60):
                await _wait_for_bytes(registry, process)
                process.send_signal(signal.SIGINT)
                await process.wait()
            assert process.stderr is not None
            stderr = (await process.stderr.receive()).decode() if process.returncode else ""
        assert process.returncode == INTERRUPTED
        assert "Traceback" not in stderr
        assert registry.stats()["images_put"] == 0

        registry.simulator.update({"bandwidth": None})
        done = await push_cli(
            aws_env,
            f"oci:{layout}",
            "ecr-public:interrupted",
            registry.endpoint_url,
            "--json",
        )
        assert done.returncode == OK, done.stderr.decode()
        report = json.loads(done.stdout)
        assert len(report["images"]) == len(tags)
