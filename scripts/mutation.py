"""Mutation testing of the core modules, each against its own tests only (``make mutation``).

mutmut 3 reads its settings from ``[tool.mutmut]`` in the ``pyproject.toml`` of the directory it
runs in and copies the sources into ``mutants/`` there. To score one module against one test file,
each module gets its own work directory ``.mutation/<module>/`` holding a copy of ``src/``,
``tests/`` and ``pyproject.toml`` whose ``[tool.mutmut]`` section is the shared one of the
project's ``pyproject.toml`` plus this module's ``only_mutate`` and test selection. A second run
reuses the work directory, so mutmut only re-tests the functions that changed; when the tests
or the settings changed, the module's mutants are tested again from scratch (mutmut would keep
its earlier verdicts).

At the end it prints killed / total per module and writes every survivor's diff to
``.mutation/survivors.md``. Usage::

    python scripts/mutation.py [--max-children N] [MODULE ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"


@dataclass(frozen=True)
class Module:
    name: str
    sources: tuple[str, ...]
    tests: tuple[str, ...]


MODULES = (
    Module("retry", ("src/layerhoist/transfer/retry.py",), ("tests/transfer/test_retry.py",)),
    Module("requeue", ("src/layerhoist/transfer/requeue.py",), ("tests/transfer/test_requeue.py",)),
    Module("budget", ("src/layerhoist/transfer/budget.py",), ("tests/transfer/test_budget.py",)),
    Module(
        "parts",
        ("src/layerhoist/transfer/parts.py", "src/layerhoist/transfer/rechunk.py"),
        ("tests/transfer/test_parts.py", "tests/transfer/test_rechunk.py"),
    ),
    Module(
        "verdicts",
        ("src/layerhoist/transfer/verdicts.py", "src/layerhoist/destinations/ecr/errors.py"),
        ("tests/destinations/test_ecr_errors.py",),
    ),
    Module("pacing", ("src/layerhoist/transfer/pacing.py",), ("tests/transfer/test_pacing.py",)),
    Module("refs", ("src/layerhoist/refs.py",), ("tests/test_refs.py",)),
)

#: mutmut's exit-code verdicts that count as detected (see ``mutmut.stats.status_by_exit_code``).
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}


def toml_value(value: object) -> str:
    """Strings, numbers, booleans and lists of them: JSON spells them as TOML does."""
    return json.dumps(value)


def module_pyproject(module: Module) -> str:
    """The project's ``pyproject.toml`` with a ``[tool.mutmut]`` section for this module only."""
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    shared = dict(tomllib.loads(text).get("tool", {}).get("mutmut", {}))
    shared["only_mutate"] = list(module.sources)
    shared["pytest_add_cli_args_test_selection"] = list(module.tests)
    # The work directory is no git repository: compare file hashes instead.
    shared["use_git_change_detection"] = False
    without = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
    section = "".join(f"{key} = {toml_value(value)}\n" for key, value in shared.items())
    return f"{without.rstrip()}\n\n[tool.mutmut]\n{section}"


def tests_fingerprint() -> str:
    """A hash of everything but the sources that decides a verdict: the tests and the settings."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    for path in sorted((ROOT / "tests").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare(module: Module) -> Path:
    workdir = WORK / module.name
    workdir.mkdir(parents=True, exist_ok=True)
    stamp = workdir / "tests.sha256"
    fingerprint = tests_fingerprint()
    if not stamp.exists() or stamp.read_text("utf-8") != fingerprint:
        shutil.rmtree(workdir / "mutants", ignore_errors=True)
        stamp.write_text(fingerprint, "utf-8")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for tree in ("src", "tests"):
        # Copied afresh, so a file deleted in the checkout is deleted here too.
        shutil.rmtree(workdir / tree, ignore_errors=True)
        shutil.copytree(ROOT / tree, workdir / tree, ignore=ignore)
    (workdir / "pyproject.toml").write_text(module_pyproject(module), "utf-8")
    return workdir


def mutmut(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=workdir,
        env=env,
        text=True,
        capture_output=args[0] != "run",
        check=False,
    )


def statuses(workdir: Path, module: Module) -> dict[str, str]:
    """Mutant name → verdict, read from the ``.meta`` files mutmut leaves beside each source."""
    from mutmut.stats import status_by_exit_code

    result: dict[str, str] = {}
    for source in module.sources:
        meta = workdir / "mutants" / f"{source}.meta"
        if not meta.exists():
            continue
        data = json.loads(meta.read_text("utf-8"))
        for name, code in data.get("exit_code_by_key", {}).items():
            result[name] = status_by_exit_code[code]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="modules to run (default: all)")
    parser.add_argument("--max-children", type=int, default=2)
    options = parser.parse_args()
    known = {m.name: m for m in MODULES}
    unknown = [name for name in options.modules if name not in known]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(known)}")
    chosen = [known[name] for name in options.modules] or list(MODULES)

    rows: list[tuple[str, int, int]] = []
    report = ["# Surviving mutants\n"]
    for module in chosen:
        print(f"== mutmut: {module.name} ({', '.join(module.sources)})", flush=True)
        workdir = prepare(module)
        run = mutmut(workdir, "run", "--max-children", str(options.max_children))
        found = statuses(workdir, module)
        if run.returncode != 0 or not found:
            print(f"mutmut failed on {module.name} (exit {run.returncode})", file=sys.stderr)
            return 1
        detected = sum(status in DETECTED for status in found.values())
        rows.append((module.name, detected, len(found)))
        report.append(f"\n## {module.name}: {detected} / {len(found)} detected\n")
        for name, status in sorted(found.items()):
            if status in DETECTED:
                continue
            diff = mutmut(workdir, "show", name).stdout.strip()
            report.append(f"\n### {name} ({status})\n\n```diff\n{diff}\n```\n")

    WORK.mkdir(exist_ok=True)
    (WORK / "survivors.md").write_text("".join(report), "utf-8")
    print(f"\n{'module':<10} {'killed':>7} {'total':>6} {'score':>7}")
    for name, detected, total in rows:
        print(f"{name:<10} {detected:>7} {total:>6} {100 * detected / total:>6.1f}%")
    print(f"\nsurvivors and their diffs: {(WORK / 'survivors.md').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
