"""The ``layerhoist`` command as users meet it: real processes, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from layerhoist.registry import EmbeddedRegistry, SimulationSettings
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.units import MiB

pytestmark = pytest.mark.anyio

SMALL_LAYER = 64 * 1024
#: A secret that must never appear in any output.
SECRET = "secret-never-shown"
#: Exit codes the CLI promises.
OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="AKIDTEST",
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(extra)
    return env


async def layerhoist(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run ``python -m layerhoist ARGS`` without blocking the loop the registry serves on."""
    return await anyio.run_process(
        [sys.executable, "-m", "layerhoist", *args],
        check=False,
        env=env if env is not None else cli_env(tmp_path),
    )


async def push_cli(
    tmp_path: Path,
    source: str,
    destination: str,
    endpoint: str,
    *extra: str,
    env: dict[str, str] | None = None,
) -> Any:
    """``layerhoist push SOURCE DESTINATION --endpoint-url ENDPOINT EXTRA...``."""
    return await layerhoist(
        tmp_path, "push", source, destination, "--endpoint-url", endpoint, *extra, env=env
    )


def one_line_error(completed: Any) -> str:
    stderr: str = completed.stderr.decode()
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("layerhoist: error:")]
    assert len(errors) >= 1, stderr
    return errors[0]


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    path = tmp_path / "layout"
    write_oci_layout(path, images=2, layers_per_image=1, layer_size=SMALL_LAYER, seed=2)
    return path


async def test_push_json_report_and_exit_zero(
    tmp_path: Path, layout: Path, registry: EmbeddedRegistry
) -> None:
    done = await push_cli(
        tmp_path,
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
    assert SECRET not in done.stdout.decode() + done.stderr.decode()


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
    layout: Path,
    registry: EmbeddedRegistry,
    source: str,
    destination: str,
    code: int,
    names: str,
) -> None:
    done = await push_cli(
        tmp_path,
        source.format(layout=layout, tmp=tmp_path),
        destination,
        registry.endpoint_url,
        "--create-repo",
    )
    assert done.returncode == code, done.stderr.decode()
    assert names in one_line_error(done)


async def test_broken_manifest_json(
    tmp_path: Path, layout: Path, registry: EmbeddedRegistry
) -> None:
    (layout / "index.json").write_text("{not json")
    done = await push_cli(
        tmp_path,
        f"oci:{layout}",
        "ecr-public:repo",
        registry.endpoint_url,
    )
    assert done.returncode == FAILED
    assert "index.json" in one_line_error(done)


async def test_unknown_repository_says_create_repo(
    tmp_path: Path, layout: Path, registry: EmbeddedRegistry
) -> None:
    done = await push_cli(
        tmp_path,
        f"oci:{layout}",
        "ecr-public:absent",
        registry.endpoint_url,
    )
    assert done.returncode == FAILED
    line = one_line_error(done)
    assert "RepositoryNotFoundException" in line
    assert "--create-repo" in line


async def test_invalid_part_size_is_a_usage_error(
    tmp_path: Path, layout: Path, registry: EmbeddedRegistry
) -> None:
    done = await push_cli(
        tmp_path,
        f"oci:{layout}",
        "ecr-public:repo",
        registry.endpoint_url,
        "--part-size",
        "1MiB",
    )
    assert done.returncode == USAGE
    assert "part_size" in one_line_error(done)


async def test_missing_and_wrong_credentials(
    tmp_path: Path, layout: Path, make_registry: Any
) -> None:
    async with make_registry(credentials={"AKIDREAL": "real-secret"}) as registry:
        args = ("push", f"oci:{layout}", "ecr-public:repo", "--endpoint-url", registry.endpoint_url)
        env = cli_env(tmp_path)
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        missing = await layerhoist(tmp_path, *args, env=env)
        assert missing.returncode == FAILED
        assert "credentials" in one_line_error(missing).lower()

        wrong = await layerhoist(
            tmp_path,
            *args,
            env=cli_env(tmp_path, AWS_ACCESS_KEY_ID="AKIDREAL", AWS_SECRET_ACCESS_KEY="guess"),
        )
        assert wrong.returncode == FAILED
        line = one_line_error(wrong)
        assert "InvalidSignatureException" in line
        assert "guess" not in wrong.stderr.decode()

        right = await layerhoist(
            tmp_path,
            *args,
            "--create-repo",
            env=cli_env(
                tmp_path, AWS_ACCESS_KEY_ID="AKIDREAL", AWS_SECRET_ACCESS_KEY="real-secret"
            ),
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


async def test_ctrl_c_leaves_no_tag_and_a_rerun_completes(
    tmp_path: Path, make_registry: Any
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
        async with await anyio.open_process(args, env=cli_env(tmp_path)) as process:
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
            tmp_path,
            f"oci:{layout}",
            "ecr-public:interrupted",
            registry.endpoint_url,
            "--json",
        )
        assert done.returncode == OK, done.stderr.decode()
        report = json.loads(done.stdout)
        assert len(report["images"]) == len(tags)
