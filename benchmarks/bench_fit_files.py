"""Benchmark of ``chamberd fit`` on a year of LI-8200 Smart Chamber files, end to end.

Builds a corpus in a temporary folder (never committed): ``--files`` JSON files of
``--reps`` reps each, every rep one of the three reps of the MIT-licensed
``tests/data/fluxfinder_LI8200-01S.json`` that the instrument fitted (CO2 and CH4, 60 s at
1 Hz) with seeded noise on both gases. Then, in the same run and on the same files:

``json``
    ``json.loads`` of every file alone: the bound, since reading a file means parsing it.
``read``
    The LI-8200 reader alone (parse, columns to arrays, checks, instrument results).
``fit``
    ``refit_paths`` over all files, end to end: read, fit every closure through the
    batch path (``fitting.fit_closures``), build the output rows.
``old``
    The per-closure path this replaced, on a sample of the files: read, then
    ``fit_closure`` for each closure and the same rows.
``process``
    The whole ``chamberd fit -q FOLDER -o out.csv`` process (start-up, CSV writing).

Each figure is the median of ``--repeats`` runs; the ratio to the old path is the median
of per-run ratios. ``--blas-threads`` sets the BLAS threads of the fits (default: the
value ``chamberd fit`` uses), ``--load N`` keeps N busy processes running meanwhile (a
loaded machine).

    python benchmarks/bench_fit_files.py                  # 365 files x 24 reps
    python benchmarks/bench_fit_files.py --load 2 --blas-threads 2 --json

Not part of the test suite: performance is measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import busy, state
from threadpoolctl import threadpool_limits

from chamberd.fitting import fit_closure
from chamberd.network_sync import refit
from chamberd.network_sync.formats import read_file

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "data" / "fluxfinder_LI8200-01S.json"


def build_corpus(folder: Path, files: int, reps: int, seed: int) -> int:
    """Write ``files`` Smart Chamber files of ``reps`` reps; returns the number of reps."""
    doc = json.loads(SOURCE.read_text())
    templates = [
        rep
        for dataset in doc["datasets"]
        for body in dataset.values()
        for rep in body["reps"].values()
        if any(f.get("n") for f in rep["footer"]["fluxes"])  # the instrument fitted it
    ]
    rng = np.random.default_rng(seed)
    for f in range(files):
        labels: dict[str, Any] = {}
        for k in range(reps):
            rep = copy.deepcopy(templates[k % len(templates)])
            for gas, sigma in (("co2", 0.3), ("ch4", 0.5)):
                values = np.asarray(rep["data"][gas], dtype=float)
                noisy = values + rng.normal(0.0, sigma, values.size)
                rep["data"][gas] = [round(v, 4) for v in noisy.tolist()]
            labels.setdefault(f"collar{k // 3:02d}", {"remark": "", "reps": {}})["reps"][
                f"REP_{k % 3 + 1}"
            ] = rep
        out = dict(doc, name=f"day{f:03d}", datasets=[labels])
        (folder / f"day{f:03d}.json").write_text(json.dumps(out))
    return files * reps


def parse_json(paths: list[Path]) -> None:
    for path in paths:
        json.loads(path.read_bytes())


def read_only(paths: list[Path]) -> int:
    return sum(len(read_file(p).observations) for p in paths)


def old_path(paths: list[Path]) -> int:
    """The per-closure path: each closure through ``fit_closure``, the same rows."""
    rows = 0
    for path in paths:
        for obs in read_file(path).observations:
            for gas, (closure, note) in zip(
                obs.gases, refit.observation_closures(obs), strict=True
            ):
                fit = fit_closure(**vars(closure))
                refit._row(obs, gas, fit, note)
                rows += 1
    return rows


def timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=365)
    parser.add_argument("--reps", type=int, default=24, help="reps per file")
    parser.add_argument("--old-files", type=int, default=20, help="files for the old path")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--blas-threads", type=int, default=refit.BLAS_THREADS)
    parser.add_argument("--load", type=int, default=0, help="busy processes meanwhile")
    parser.add_argument("--no-process", action="store_true", help="skip the CLI process run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    refit.BLAS_THREADS = args.blas_threads  # what refit_paths limits BLAS to
    chamberd = Path(sys.executable).parent / "chamberd"
    with tempfile.TemporaryDirectory(prefix="chamberd-bench-") as tmp:
        folder = Path(tmp) / "corpus"
        folder.mkdir()
        reps = build_corpus(folder, args.files, args.reps, args.seed)
        paths = sorted(folder.glob("*.json"))
        old_paths = paths[: args.old_files]
        old_reps = args.reps * len(old_paths)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        load_before = os.getloadavg()[0]
        runs: dict[str, list[float]] = {k: [] for k in ("json", "read", "fit", "old", "process")}
        ratios = []
        with busy(args.load):
            for _ in range(args.repeats):
                runs["json"].append(reps / timed(parse_json, paths))
                runs["read"].append(reps / timed(read_only, paths))
                runs["fit"].append(reps / timed(refit.refit_paths, paths))
                with threadpool_limits(limits=args.blas_threads, user_api="blas"):
                    runs["old"].append(old_reps / timed(old_path, old_paths))
                ratios.append(runs["fit"][-1] / runs["old"][-1])
                if not args.no_process:
                    env = dict(os.environ)
                    command = [str(chamberd), "fit", "-q", str(folder), "-o", f"{tmp}/out.csv"]
                    start = time.perf_counter()
                    subprocess.run(command, check=False, env=env)
                    runs["process"].append(reps / (time.perf_counter() - start))
        load_after = os.getloadavg()[0]
    result = {
        "files": args.files,
        "reps": reps,
        "megabytes": round(megabytes, 1),
        **{f"{k}_reps_per_s": statistics.median(v) for k, v in runs.items() if v},
        "speedup_vs_old": statistics.median(ratios),
        "fit_share_of_json_bound": statistics.median(runs["fit"]) / statistics.median(runs["json"]),
        "repeats": args.repeats,
        "old_path_reps": old_reps,
        "blas_threads": args.blas_threads,
        "busy_processes": args.load,
        "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
        "machine": state(),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"corpus            {args.files} files x {args.reps} reps = {reps} reps", end="")
    print(f" ({megabytes:.0f} MB)")
    print(f"json.loads alone  {result['json_reps_per_s']:>10,.0f} reps/s   (the bound)")
    print(f"reader alone      {result['read_reps_per_s']:>10,.0f} reps/s")
    print(f"refit_paths       {result['fit_reps_per_s']:>10,.0f} reps/s   (read + fit + rows)")
    if runs["process"]:
        print(f"chamberd fit      {result['process_reps_per_s']:>10,.0f} reps/s   (whole process)")
    print(
        f"old per-closure   {result['old_reps_per_s']:>10,.0f} reps/s   ({old_reps} reps); "
        f"speed-up {result['speedup_vs_old']:.1f} x"
    )
    print(
        f"(medians of {args.repeats} runs; BLAS threads {args.blas_threads}, {args.load} busy "
        f"processes, load {load_before:.1f} -> {load_after:.1f}; {result['machine']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
