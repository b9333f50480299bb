"""``layerhoist copy`` (and ``push``, its former name) into an OCI layout: real processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from layerhoist.state import StateFile
from layerhoist.testing.synthetic import REF_NAME_ANNOTATION, write_oci_layout

pytestmark = pytest.mark.anyio

SMALL_LAYER = 64 * 1024
OK, FAILED, USAGE, LOCKED = 0, 1, 2, 3


async def layerhoist(*args: str) -> Any:
    return await anyio.run_process([sys.executable, "-m", "layerhoist", *args], check=False)


def error_lines(completed: Any) -> list[str]:
    stderr: str = completed.stderr.decode()
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("layerhoist: error:")]


def tags(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_bytes())
    return {e["annotations"][REF_NAME_ANNOTATION]: e["digest"] for e in index["manifests"]}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source"
    write_oci_layout(path, images=2, layers_per_image=1, layer_size=SMALL_LAYER, multiarch=True)
    return path


@pytest.mark.parametrize("command", ["copy", "push"])
async def test_copy_and_push_write_a_layout(tmp_path: Path, source: Path, command: str) -> None:
    dest = tmp_path / "dest"
    done = await layerhoist(
        command, f"oci:{source}", f"oci:{dest}", "--json", "--part-size", "4KiB"
    )
    assert done.returncode == OK, done.stderr.decode()
    report = json.loads(done.stdout)
    assert [image["destination"] for image in report["images"]] == [
        f"oci:{dest}:v1",
        f"oci:{dest}:v2",
    ]
    assert tags(dest) == tags(source)
    assert "2/2 images" in done.stderr.decode()


async def test_a_state_file_another_run_holds_is_exit_3(tmp_path: Path, source: Path) -> None:
    state = tmp_path / "state.sqlite"
    args = ("copy", f"oci:{source}", f"oci:{tmp_path / 'dest'}", "--state", str(state))
    with StateFile(state):
        held = await layerhoist(*args)
    assert held.returncode == LOCKED
    (line,) = error_lines(held)
    assert str(state) in line
    done = await layerhoist(*args)
    assert done.returncode == OK, done.stderr.decode()


async def test_a_corrupt_blob_is_one_line_and_exit_one(tmp_path: Path) -> None:
    source = tmp_path / "source"
    write_oci_layout(source, images=1, layers_per_image=1, layer_size=SMALL_LAYER)
    manifest = json.loads(
        (source / "blobs" / "sha256" / tags(source)["v1"].removeprefix("sha256:")).read_bytes()
    )
    layer = manifest["layers"][0]["digest"]
    path = source / "blobs" / "sha256" / layer.removeprefix("sha256:")
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    dest = tmp_path / "dest"
    done = await layerhoist("copy", f"oci:{source}", f"oci:{dest}", "--quiet")
    assert done.returncode == FAILED
    (line,) = error_lines(done)
    assert layer in line and f"oci:{dest}:v1" in line
    assert not (dest / "index.json").exists()
    assert sorted(p.name for p in (dest / "blobs" / "sha256").iterdir()) == [
        manifest["config"]["digest"].removeprefix("sha256:")
    ]
    assert [p.name for p in dest.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("destination", "fragment"),
    [
        ("oci:", "empty path"),
        ("oci:{tmp}/dest:one-tag", "2 images"),
    ],
)
async def test_bad_destinations_are_usage_errors(
    tmp_path: Path, source: Path, destination: str, fragment: str
) -> None:
    done = await layerhoist("copy", f"oci:{source}", destination.format(tmp=tmp_path))
    assert done.returncode == USAGE
    (line,) = error_lines(done)
    assert fragment in line


async def test_help_names_both_commands_and_loads_no_transport() -> None:
    probe = (
        "import sys; from layerhoist.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print([m for m in sys.modules if m.startswith(('layerhoist.destinations.', 'aioboto3'))])"
    )
    done = await anyio.run_process([sys.executable, "-c", probe])
    out = done.stdout.decode()
    assert "copy" in out and "push" in out
    assert out.strip().endswith("[]")
