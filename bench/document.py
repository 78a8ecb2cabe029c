"""docs/benchmarks.md from the figures of ``python -m bench.run_all`` (a run's, or a saved results.json's
with ``--render-only``): the header (run, machine, libraries), the table of stages, each stage's section
(bench/training_sections.py, bench/serving_sections.py) and, when saved, the peers, photo and hot-path benchmarks'
reports.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from bench.peers_report import report_from_json
from bench.serving_sections import section_serving
from bench.stages import STAGES
from bench.support import markdown_table as table
from bench.training_sections import (section_accuracy, section_backends, section_distributed, section_keras,
                                     section_numpy, section_train)


def render(results: dict, output: Path, plots: Path) -> None:
    """Write the document from the figures (also ``--render-only``: from a saved results.json)."""
    from training.atomic import write_bytes_atomic

    stages = results["stages"]
    only = results.get("only") or [name for name in STAGES if name in stages]
    links = {name: os.path.relpath(plots / png, output.parent)
             for name, png in (("accuracy", "accuracy_vs_time.png"), ("serving", "serving_latency.png"))
             if name in stages and not stages[name]["error"] and (plots / png).is_file()}
    sections = {"train": lambda stage: section_train(stage, None),
                "accuracy": lambda stage: section_accuracy(stage, links.get("accuracy")),
                "numpy": section_numpy, "keras": section_keras, "backends": section_backends,
                "serving": lambda stage: section_serving(stage, links.get("serving")),
                "distributed": section_distributed}
    lines = header_lines(results, os.path.relpath(plots / "results.json", output.parent))
    lines += table(["benchmark", "command", "minutes"],
                   [[stages[name]["title"], f"`{stages[name]['command']}`", f"{stages[name]['seconds'] / 60:.1f}"
                     + (f" ({stages[name]['error']})" if stages[name]["error"] else "")] for name in only])
    lines.append("")
    for name in ("train", "accuracy", "numpy", "keras", "backends", "serving", "distributed"):
        if name in stages:
            section = sections[name](stages[name])
            if stages[name].get("rerun"):
                section[1:1] = ["", f"Rerun on its own (`--only {name} --merge`): {stages[name]['rerun']}; "
                                    "the other sections come from the run described at the top."]
            lines += section + [""]
    lines += section_peers(plots / PEERS_JSON, output)
    lines += section_peers_grpc(plots / PEERS_GRPC_JSON, output)
    lines += section_photos(plots / PHOTOS_JSON, output)
    lines += section_operator_features(plots / OPERATOR_FEATURES_JSON, output)
    lines += section_hot_paths(plots / HOT_PATHS_JSON, output)
    write_bytes_atomic(output, "\n".join(lines).encode())


def saved_run(render):
    """A section from a benchmark's saved run: ``section(path, output)`` is ``[]`` when ``path`` is absent,
    else ``render(data, link)`` with the JSON's content and its link relative to the document."""
    @functools.wraps(render)
    def section(path: Path, output: Path) -> list[str]:
        if not path.is_file():
            return []
        return render(json.loads(path.read_text()), os.path.relpath(path, output.parent))

    return section


PEERS_JSON = "peers.json"  # python -m bench.peers --json docs/benchmarks/peers.json (not run by run_all: too long)


@saved_run
def section_peers(data: dict, link: str) -> list[str]:
    """The serving frameworks side by side (bench/peers.py), from its last saved run, if there is one."""
    return ["## Serving against the Python serving frameworks", "",
            "`python -m bench.peers --json docs/benchmarks/peers.json --markdown` (not part of `run_all`: it "
            "builds a virtual environment per framework; this run took "
            f"{data['elapsed_seconds'] / 60:.0f} minutes), run on its own on {data['when']}; raw figures: [`{link}`]({link}). Every server loads the same SavedModel and passes "
            "a correctness gate first; the servers take turns in every repeat; wrk -t1 with keep-alive "
            "connections; CPU per request and PSS over each server's whole process tree.", "",
            report_from_json(data), ""]


PEERS_GRPC_JSON = "peers-grpc.json"  # python -m bench.peers --servers ours,ours-grpc,kserve-grpc --json ...


@saved_run
def section_peers_grpc(data: dict, link: str) -> list[str]:
    """Ours over gRPC against KServe's gRPC server and our HTTP (bench/peers.py's gRPC rows), if saved."""
    return ["## Serving over gRPC", "",
            "`python -m bench.peers --servers ours,ours-grpc,kserve-grpc --json docs/benchmarks/peers-grpc.json "
            f"--markdown`, run on its own on {data['when']} ({data['elapsed_seconds'] / 60:.0f} minutes); raw "
            f"figures: [`{link}`]({link}). The gRPC rows send the Open Inference Protocol's ModelInfer (raw FP32) "
            "from h2load (a pre-serialised frame, one call at a time per connection; wrk's columns are h2load's "
            "here); ours over HTTP is the same gunicorn's `POST /predict`. h2load's c=1 level is checked against a "
            "plain grpcio client (the last table): where the two disagree, compare the plain client's figures.", "",
            report_from_json(data), ""]


PHOTOS_JSON = "photos.json"  # python -m bench.photos --json docs/benchmarks/photos.json


@saved_run
def section_photos(data: dict, link: str) -> list[str]:
    """Digits photographed, scanned and drawn (bench/photos.py), from its last saved run, if there is one."""
    from bench.photo_report import report_from_json as photos_report

    return ["## Photos, scans and drawings", "",
            "`python -m bench.photos --json docs/benchmarks/photos.json --markdown`, run on its own; raw figures: "
            f"[`{link}`]({link}). MNIST test digits rendered as phone photos, scans and drawings under each "
            "condition (bench/photo_looks.py says what each models), sent to the service as a user sends them, "
            "next to the same digits sent as 784 numbers; CPU per photo is the service's (decoding, preprocessing, "
            "the model), not the rendering's.", "", photos_report(data), ""]


OPERATOR_FEATURES_JSON = "operator-features.json"  # python -m bench.operator_features --json ...


@saved_run
def section_operator_features(data: dict, link: str) -> list[str]:
    """What request IDs, the JSON access log, tokens and TLS cost per request (bench/operator_features.py)."""
    from bench.operator_features import report_from_json as features_report

    return ["## What the operator features cost", "",
            f"`python -m bench.operator_features --json docs/benchmarks/{OPERATOR_FEATURES_JSON} --markdown`, run on "
            f"its own at commit {data['commit']} ({data['minutes']:.0f} minutes, {data['cpu']}); raw figures: "
            f"[`{link}`]({link}). Our service under gunicorn (2 workers), one configuration at a time, the order "
            "alternating between rounds; `off` is this checkout as shipped, `base` the service before the features "
            "(same settings). \"vs off\" is each round's ratio to `off`, median (min-max) over the rounds.", "",
            *features_report(data)]


HOT_PATHS_JSON = "hot-paths.json"  # python -m bench.hot_paths --json docs/benchmarks/hot-paths.json


@saved_run
def section_hot_paths(data: dict, link: str) -> list[str]:
    """Each serving hot-path mechanism against the plain way it replaces (bench/hot_paths.py), if saved."""
    from bench.hot_paths import report_from_json as hot_paths_report

    return ["## Hot paths", "",
            f"`{data['command']}`, run on its own on {data['when']} ({data['elapsed_seconds'] / 60:.1f} "
            f"minutes); raw figures: [`{link}`]({link}). Each mechanism of the serving hot path that the code "
            "names this benchmark for, side by side in one process with the plain way it replaces (both checked "
            "to give the same results first); the two take turns in every repeat; µs per call, medians. "
            "bench/hot_paths.py says exactly what each row times.", "", hot_paths_report(data), ""]


def header_lines(results: dict, raw_link: str) -> list[str]:
    """The title, how the document was made, the run, the machine and the libraries."""
    info = results["machine"]
    load_before, load_after = results["load_average"]
    return [
        "# Benchmarks",
        "",
        "Written by `python -m bench.run_all`" + (" **--quick** (smoke sizes: not meaningful figures)"
                                                  if results["quick"] else "")
        + "; do not edit by hand. Rerun it to reproduce (real MNIST from `MNIST_DATA_DIR`; how long it takes: "
        "the run's line below).",
        "",
        f"- Run: {results.get('finished_utc', 'unknown')}, commit {info['commit']}, "
        f"{results['seconds'] / 60:.1f} minutes in all.",
        f"- Machine: {info['cores']} cores ({info['cpu']}), {info['memory']} memory, {info['os']}; load average "
        f"{load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} (1/5/15 min) at the start, "
        f"{load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f} at the end"
        + (f"; environment {info['openblas_env']} (forces OpenBLAS kernels)" if info["openblas_env"] else "") + ".",
        "- Libraries: " + ", ".join(f"{package} {version}" for package, version in info["versions"].items())
        + f"; NumPy's BLAS: {', '.join(info['blas'])}"
        + (" (`OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` unset, so OpenBLAS picks its kernels itself)."
           if not info["openblas_env"] else "."),
        "- The machine is shared (other work may run beside the benchmarks): compare figures within this run, "
        "where the baselines were measured side by side, rather than across runs.",
        f"- Raw figures: [`{raw_link}`]({raw_link}).",
        "",
    ]
