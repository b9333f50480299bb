"""``layerhoist bench``: how fast can we push from here, with which settings, and what limits it.

::

    layerhoist bench [--dest DEST] [--size 4MiB,8MiB] [--layers N] [--images N]
                     [--concurrency 1,4,16] [--part-size 5MiB,10MiB] [--profile lan|wan|far]
                     [--repeat N] [--json FILE] [--plot FILE.png] [--source oci:DIR] [--keep]
                     [--no-quotas] [--pacing auto|published|off] [--seed N] [--quiet]

It sweeps every combination of ``--concurrency`` (blobs in flight) and ``--part-size``; each
combination (a *cell*) is pushed ``--repeat`` times, after one unrecorded warm-up push. Every
push runs in a client process of its own (:mod:`layerhoist.bench.cell`), into a fresh
repository, so each is a cold push whose CPU time and peak RSS the kernel reports alone.

Without ``--dest`` the pushes go to the embedded registry, started in a separate process (client
and server never share an event loop). It enforces the ECR Public request-rate quotas, which the
clients pace themselves at as they would against the service (``--no-quotas`` drops both), and
simulates the network of ``--profile``: latency per request, bandwidth per connection. Parts
travel as base64, so a connection of 25 MB/s carries 18.75 MB/s of layer bytes.

========  ==========  ==========================  ==========================================
profile   latency     bandwidth per connection    like
========  ==========  ==========================  ==========================================
lan       none        unlimited                   same host or data centre; CPU-bound
wan       40 ms       25 MB/s                     a good link to a nearby AWS region
far       150 ms      8 MB/s                      another continent
========  ==========  ==========================  ==========================================

With ``--dest`` the pushes go to the real ECR Public or ECR repository it names, with the normal
AWS credentials: each push goes to a scratch repository named
``REPO/layerhoist-bench-scratch-RUNID/...``, deleted with everything in it at the end unless
``--keep``. Synthetic layers are incompressible bytes generated from ``--seed`` and streamed
(:mod:`layerhoist.bench.synth`); ``--source oci:DIR`` pushes a real image instead.

The result is a table on stdout (one row per cell, :mod:`layerhoist.bench.report` explains the
figures and the "limited by" column), ``--json`` with every run and the environment, and
``--plot`` a chart (:mod:`layerhoist.bench.plot`; matplotlib comes with the ``bench`` extra,
``pip install 'layerhoist[bench]'``). Ctrl-C stops the sweep and still reports the runs that
finished.

The modules: :mod:`~layerhoist.bench.options` (the parser and the checked settings),
:mod:`~layerhoist.bench.sweep`, :mod:`~layerhoist.bench.cell`, :mod:`~layerhoist.bench.targets`,
:mod:`~layerhoist.bench.measure` (every reading of the kernel's figures),
:mod:`~layerhoist.bench.report`, :mod:`~layerhoist.bench.plot` and
:mod:`~layerhoist.bench.synth`.
"""

from __future__ import annotations

import argparse

from layerhoist.bench.options import BenchSettings
from layerhoist.bench.options import configure_parser as configure_parser


def run(args: argparse.Namespace) -> int:
    """Run the bench as ``args`` say; the exit code (0 ok, 1 a run failed, 2 usage, 130 Ctrl-C)."""
    # The cell and the sweep load the push pipeline, the AWS SDK, aiohttp and rich: imported
    # once a bench runs, so that building the ``layerhoist`` command line stays cheap.
    if args.cell:
        from layerhoist.bench.cell import main

        return main()
    settings = BenchSettings.from_args(args)
    from layerhoist.bench.sweep import run_sweep

    return run_sweep(settings)
