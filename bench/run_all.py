"""Run every benchmark in one go and rewrite docs/benchmarks.md (tables, plots, the machine, the commands).

    python -m bench.run_all                 # the full set (each stage's duration: docs/benchmarks.md)
    python -m bench.run_all --quick         # a smoke version: tiny sizes, same report
    python -m bench.run_all --only serving,numpy --output /tmp/b.md
    python -m bench.run_all --render-only   # rewrite docs/benchmarks.md from docs/benchmarks/results.json
    python -m bench.run_all --only serving --merge   # rerun one stage; keep the others' figures

Each benchmark runs as a subprocess with ``--json`` (``python -m bench.numpy_training``, ``bench.keras_mirror``,
``bench.backends``, ``bench.training_accuracy``, ``bench.serving``, ``bench.distributed``), plus ``python training/train.py --no-export`` with its
defaults, whose metrics.json and history.csv are read back. Every subprocess has a time limit; one that
fails or times out is reported as such in the document and the others still run. The report gives
every timing as median (min-max) over its repeats, and the ratios against the baselines measured side
by side in the same run (the servers take turns, the training engines alternate epoch by epoch).
Plots go to ``docs/benchmarks/`` (``--plots-dir``) with the raw figures (``results.json``).

The stages are in bench/stages.py, the document in bench/document.py (its sections in
bench/training_sections.py and bench/serving_sections.py); this file is the command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.document import render
from bench.stages import STAGES, merged, run_stages
from bench.support import REPO, machine


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the pipeline in a few minutes")
    parser.add_argument("--only", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--plots-dir", type=Path, default=None,
                        help="plots and results.json (default: a 'benchmarks' folder beside --output)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other stages of the plots folder's results.json and replace only the "
                             "--only stages (the document marks them as rerun)")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rewrite the document from the plots folder's results.json")
    args = parser.parse_args(argv)
    args.only = [stage.strip() for stage in args.only.split(",") if stage.strip()]
    if set(args.only) - set(STAGES):
        parser.error(f"unknown stages {sorted(set(args.only) - set(STAGES))}; choose from {','.join(STAGES)}")
    args.output = args.output.resolve()
    args.plots_dir = (args.plots_dir or args.output.parent / "benchmarks").resolve()
    if (args.merge or args.render_only) and not (args.plots_dir / "results.json").is_file():
        parser.error(f"{args.plots_dir / 'results.json'} does not exist: run without --merge/--render-only first")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    plots = args.plots_dir
    if args.render_only:
        render(json.loads((plots / "results.json").read_text()), args.output, plots)
        print(f"wrote {args.output} from {plots / 'results.json'}")
        return 0
    started = time.monotonic()
    info = machine()
    load_before = os.getloadavg()
    stages = run_stages(args.only, args.quick, plots)
    total = time.monotonic() - started
    results = {"machine": info, "quick": args.quick, "seconds": total, "only": args.only,
               "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "load_average": [load_before, os.getloadavg()], "stages": stages}
    if args.merge:
        results = merged(json.loads((plots / "results.json").read_text()), results)
    (plots / "results.json").write_text(json.dumps(results, indent=1, default=str))
    render(results, args.output, plots)
    print(f"wrote {args.output} and {plots}/ in {total / 60:.1f} minutes")
    return 1 if any(stage["error"] for stage in stages.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
