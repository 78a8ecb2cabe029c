"""The README's tables of figures, generated from the benchmarks' saved runs, never copied by hand.

    python -m bench.readme_tables            # rewrite the README's generated blocks from docs/benchmarks/*.json
    python -m bench.readme_tables --check    # exit 1 if a block differs from what its JSON gives

A generated block sits between ``<!-- generated: NAME (...) -->`` and ``<!-- end generated: NAME -->`` in
README.md; everything between the two lines is replaced. Blocks (each from one saved run):

- ``peers``: the serving frameworks side by side (``python -m bench.peers --json docs/benchmarks/peers.json``):
  per server the median over the repeats of requests/s (and p99) at each load level, CPU per request and PSS,
  then ours over the best framework peer, computed within each repeat (median, and the worst repeat);
- ``photos``: digits photographed, scanned and drawn (``python -m bench.photos --json docs/benchmarks/photos.json``):
  each row's share read right, its ratio to the same digits sent as numbers, and the goal.

tests/bench/test_readme_tables.py fails when the README and the JSON disagree, so a new run is one command
away from the README, and a hand edit of a figure fails the tests.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from bench.peers_load import level_from_name
from bench.peers_report import Column, level_column, ours_vs_best_peer
from bench.peers_servers import PEERS, SPECS
from bench.support import REPO
from training.atomic import write_bytes_atomic

README = REPO / "README.md"
SAVED = REPO / "docs" / "benchmarks"
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+)[^\n]*-->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)",
                   re.DOTALL)


# ---- peers ------------------------------------------------------------------------------------------
def _median(runs: list[dict], read) -> float | None:
    values = [value for value in (read(run) for run in runs if run["status"] == "measured") if value is not None]
    return statistics.median(values) if values else None


def _rate(runs: list[dict], level: str, bold: bool) -> str:
    rps = _median(runs, lambda run: run["levels"].get(level, {}).get("rps"))
    p99 = _median(runs, lambda run: run["levels"].get(level, {}).get("p99_ms"))
    if rps is None:
        return "-"
    figure = f"**{rps:,.0f}**" if bold else f"{rps:,.0f}"
    return figure + (f" ({p99:.2g} ms)" if p99 is not None and bold else "")


def peers_block(data: dict) -> str:
    """The compact peers table and the ratios sentence of a saved ``bench.peers --json`` run."""
    levels = data["settings"]["levels"]
    results = {name: runs for name, runs in data["results"].items() if name in SPECS}
    lines = ["| server | " + " | ".join(f"{level} req/s" for level in levels) + " | CPU ms/request | PSS after load |",
             "|---|" + "---:|" * (len(levels) + 2)]
    for name, runs in results.items():
        ours = name == "ours"
        cpu = _median(runs, lambda run: run["levels"].get(levels[1 if len(levels) > 1 else 0], {})
                      .get("cpu_ms_per_request"))
        pss = _median(runs, lambda run: run.get("pss_mib"))
        cells = [_rate(runs, level, ours) for level in levels]
        cells += ["-" if cpu is None else f"{cpu:.2f}", "-" if pss is None else f"{pss:,.0f} MiB"]
        label = f"**{SPECS[name].name}**" if ours else SPECS[name].name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    ratios = []
    for level in levels:
        stats, names = ours_vs_best_peer(results, level_column(level, level_from_name(level), "rps", True, ".1f"))
        if stats is not None:
            ratios.append(f"{stats['median']:.2f}x at {level} (worst repeat {stats['min']:.2f}x, vs {'/'.join(names)})")
    cpu_level = levels[1 if len(levels) > 1 else 0]
    cpu_stats, _ = ours_vs_best_peer(results, Column("cpu", lambda run: run["levels"].get(cpu_level, {})
                                                     .get("cpu_ms_per_request"), False))
    sentence = f"Ours over the best framework peer ({', '.join(PEERS)}), within each of {data['settings']['repeats']} " \
               f"repeats, median: {'; '.join(ratios)}"
    if cpu_stats is not None:
        sentence += f"; CPU per request {cpu_stats['median']:.2f}x the best peer's at {cpu_level}"
    return "\n".join(lines + ["", sentence + f". Run of {data['when'][:10]}, commit {data['machine'].get('commit')}."])


# ---- photos -----------------------------------------------------------------------------------------
def photos_block(data: dict) -> str:
    """Each row of a saved ``bench.photos --json`` run: the share answered right, its ratio to the clean
    accuracy, the service's CPU per photo (median), the goal."""
    lines = ["| photos of | photos | right | of the clean accuracy | CPU ms per photo | goal |",
             "|---|---:|---:|---:|---:|---|"]
    for row in data["rows"]:
        if row.get("available") is False:
            continue
        ratio = "1" if row["group"] == "clean" else ("" if row.get("ratio") is None else f"{row['ratio']:.3f}")
        cpu = f"{row['cpu_ms']['median']:.1f}" if row.get("cpu_ms") else ""
        goal = {True: "met", False: "**not met**"}.get(row.get("meets_goal"), "")
        lines.append(f"| {row['name']} | {row['count']} | {row['success']:.1%} | {ratio} | {cpu} | {goal} |")
    return "\n".join(lines + ["", "Right: read right (one digit), read exactly (numbers; touching: or flagged as "
                              "touching), answered 422 (no digit). "
                              f"Seed {data.get('seed')}, run of {str(data.get('created', ''))[:10]}, commit "
                              f"{data.get('machine', {}).get('commit')}."])


BLOCKS = {"peers": ("peers.json", peers_block), "photos": ("photos.json", photos_block)}


# ---- the README -------------------------------------------------------------------------------------
def rendered(readme: str, saved: Path = SAVED) -> str:
    """``readme`` with every generated block rendered again from its JSON (unknown names: an error)."""
    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise SystemExit(f"README.md: unknown generated block {name!r} (known: {', '.join(BLOCKS)})")
        file, render = BLOCKS[name]
        body = render(json.loads((saved / file).read_text()))
        return f"{match.group(1)}{body}\n{match.group(4)}"

    return BLOCK.sub(replace, readme)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say whether the README is current")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args()
    current = args.readme.read_text()
    new = rendered(current)
    if args.check:
        if new != current:
            sys.exit(f"{args.readme}: generated blocks are out of date: run python -m bench.readme_tables")
        print(f"{args.readme}: generated blocks are current")
        return
    write_bytes_atomic(args.readme, new.encode())
    print(f"{args.readme}: {len(BLOCK.findall(current))} generated blocks written")


if __name__ == "__main__":
    main()
