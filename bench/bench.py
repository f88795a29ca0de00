"""qatcore kernels against a plain memory copy and against PyTorch, the public calls against
the kernels, and a QAT training step against FP32 and torch.ao, in one run.

    python bench/bench.py [--repeat N] [--rounds R] [--isa LEVEL] [--threads N ...]
                          [--only CASES]

``--only`` takes a comma-separated list of cases, run in the table's order: ``arq``,
``ulq``, ``ulq_weight``, ``ifmr`` (the kernels on large tensors), ``threads`` (in-cache
sizes, thread scaling, the grains, and the public calls with only ``import qatcore``),
``calls`` (the cost of a public call over its kernel, in a process without PyTorch; the
group ``kernels`` is these six), ``digits``, ``resnet20`` (the training steps; the group
``train`` is both). The default runs everything, e.g. ``--only train`` or
``--only ulq_weight``. Each case's module in bench/ says what it measures.

Every kernel row is the median of --repeat timed runs after two warm-up runs, in this
one process. "GB/s" counts the bytes a kernel must move at the least (read its inputs,
write its outputs: twice the tensor for the copy, ARQ and the ULQ forwards, three times
for the ULQ backward, twice for the weight-ULQ backward, whose grad_weight is grad_output
itself, once for a histogram), so the copy's GB/s is the machine's practical bandwidth.
"x copy" is time / single-threaded copy time of the same tensor (lower is better, 1.0 is
memory speed), or / the FP32 step for the QAT rows; "x faster than torch" is the PyTorch
time (torch.ao QAT for the QAT rows, the autograd graph of the same formulas for weight
ULQ) at the same thread count / qatcore time. The cases with tables of their own
(threads, calls) print them after the main table.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import qatcore
from common import Row, print_table

ROUNDS = 60  # interleaved rounds of the training-step cases


@dataclass(frozen=True)
class Case:
    """Where a case lives: ``rows`` (its rows of the main table) and ``report`` (its own
    tables, printed after the main one) name functions of bench/``module``.py taking the
    parsed arguments. A ``child`` case instead runs that file as a script, in a process
    of its own, after the main table."""

    module: str
    rows: str | None = "rows"
    report: str | None = None
    child: bool = False
    needs_torch: bool = True


CASES = {
    "arq": Case("arq"),
    "ulq": Case("ulq"),
    "ulq_weight": Case("ulq_weight"),
    "ifmr": Case("ifmr"),
    "threads": Case("threads", report="report"),
    "calls": Case("calls", rows=None, child=True, needs_torch=False),
    "digits": Case("train", rows="digits_rows"),
    "resnet20": Case("train", rows="resnet20_rows"),
}
GROUPS = {
    "kernels": ["arq", "ulq", "ulq_weight", "ifmr", "threads", "calls"],
    "train": ["digits", "resnet20"],
}


def parse_cases(text: str) -> list[str]:
    """A comma-separated list of case and group names, in the table's order."""
    chosen = set()
    for word in text.split(","):
        names = GROUPS.get(word.strip(), [word.strip()])
        for name in names:
            if name not in CASES:
                raise argparse.ArgumentTypeError(
                    f"unknown case {word.strip()!r}; expected a comma-separated list of "
                    f"{', '.join([*CASES, *GROUPS])}"
                )
        chosen.update(names)
    return [name for name in CASES if name in chosen]


def run_child(case: Case, a: argparse.Namespace) -> None:
    """bench/<module>.py in a process that has not imported PyTorch, on the same
    instruction-set level and thread counts. Its --repeat is its own (calls per median),
    so it keeps its default."""
    env = dict(os.environ)
    if a.isa:
        env["QATCORE_ISA"] = a.isa  # a cap: the child then runs at the level asked for
    script = Path(__file__).with_name(f"{case.module}.py")
    print(flush=True)
    threads = [str(t) for t in a.threads]
    subprocess.run([sys.executable, str(script), "--threads", *threads], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per kernel row (median)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="interleaved rounds per training-step row (median; the digits case runs 5x as many)",
    )
    parser.add_argument("--isa", choices=qatcore.available_isas(), help="instruction-set level")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--only",
        type=parse_cases,
        default=list(CASES),
        metavar="CASES",
        help=f"comma-separated cases or groups to run (default: all): {', '.join(CASES)}; "
        + "; ".join(f"{g} = {','.join(names)}" for g, names in GROUPS.items()),
    )
    args = parser.parse_args()
    if args.isa:
        qatcore.set_isa(args.isa)
    info = qatcore.backend_info()
    versions = f"numpy {np.__version__}"
    if any(CASES[name].needs_torch for name in args.only):
        versions = f"torch {importlib.import_module('torch').__version__}  {versions}"
    print(
        f"qatcore {info['version']}  isa={info['isa']} (available {info['available_isas']})  "
        f"{versions}  {platform.machine()}"
    )
    cases = [CASES[name] for name in args.only]
    rows: list[Row] = []
    for case in cases:
        if case.rows:
            rows += getattr(importlib.import_module(case.module), case.rows)(args)
    if rows:
        print_table(rows)
    for case in cases:
        if case.report:
            getattr(importlib.import_module(case.module), case.report)(args)
        if case.child:
            run_child(case, args)


if __name__ == "__main__":
    main()
