"""tests/container/kube.sh's Python side: deploy/kubernetes.yaml read as Kubernetes would read it, and
what podman made of it checked against it. Run from the repository root as
``python -m tests.container.kube_check COMMAND ...``:

    render MANIFEST OUT --image I --host-port P --grpc-host-port G --suffix S
        a copy of the manifest for `podman kube play` on this machine; prints each change
    probes MANIFEST URL CONTAINER --grpc-address 127.0.0.1:G
        a kubelet's startup and readiness probes, with the manifest's timings, against URL (the pod's
        published HTTP port) or the published gRPC port (a grpc probe: tests/container/grpc_check.py);
        exit 1 if the startup probe would have restarted the container or the pod never became ready
    limits MANIFEST CONTAINER
        the container's identity, security and resources (podman inspect, /proc inside, the cgroup
        files on the host) against the manifest's; exit 1 on a mismatch, notes what podman ignores
    field MANIFEST WHAT
        one value of the Deployment, for the shell: prestop (the preStop command as JSON),
        grace (terminationGracePeriodSeconds), kinds (the manifest's kinds), workers (WEB_CONCURRENCY)

PyYAML, the standard library and the podman command only (grpcio for a grpc probe).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from .kube_limits import limits
from .kube_manifest import PODMAN_KINDS, deployment, documents, fail, podman, the_container

# ------------------------------------------------------------------------------------------ render
def render(args) -> None:
    """The manifest as podman must have it here. Each change is printed; nothing else differs."""
    docs = documents(Path(args.manifest))
    deploy = deployment(docs)
    container = the_container(docs)
    template = deploy["spec"]["template"]
    changes = [f"image {container['image']} -> {args.image} (the image built here; the manifest names "
               "the one in your registry)"]
    container["image"] = args.image
    if deploy["spec"].get("replicas", 1) != 1:
        changes.append(f"replicas {deploy['spec']['replicas']} -> 1 (one pod on one machine: replicas would "
                       "share the published port)")
        deploy["spec"]["replicas"] = 1
    for name, host_port in (("http", args.host_port), ("grpc", args.grpc_host_port)):
        port = next(port for port in container["ports"] if port.get("name") == name)
        port["hostIP"], port["hostPort"] = "127.0.0.1", host_port
        changes.append(f"port {name} {port['containerPort']} published on 127.0.0.1:{host_port} (hostIP, "
                       "hostPort): no Service or cluster network here")
    old_name = deploy["metadata"]["name"]
    deploy["metadata"]["name"] = f"{old_name}-{args.suffix}"
    renamed = {}
    for volume in template["spec"].get("volumes", []):
        renamed[volume["name"]] = f"{volume['name']}-{args.suffix}"
        volume["name"] = renamed[volume["name"]]
    for mount in container.get("volumeMounts", []):
        mount["name"] = renamed[mount["name"]]
    changes.append(f"Deployment {old_name} -> {deploy['metadata']['name']} and volumes "
                   f"{', '.join(renamed)} -> {', '.join(renamed.values())} (podman names pods and emptyDir "
                   "volumes after them: unique names keep concurrent runs apart)")
    Path(args.out).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    print("rendered copy for podman kube play:")
    for change in changes:
        print(f"    {change}")


# ------------------------------------------------------------------------------------------ probes
def named_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    for entry in container.get("ports", []):
        if entry.get("name") == port:
            return entry["containerPort"]
    fail(f"the probe's port {port!r} is not among the container's ports")


def probe_once(url: str, probe: dict) -> tuple[bool, str]:
    """One probe, as the kubelet does it: HTTP GET, success a status 200-399 within timeoutSeconds; gRPC
    (``url`` is then the published gRPC address), success a health Check answered SERVING."""
    if "grpc" in probe:
        from .grpc_check import health_status

        status = health_status(url, probe["grpc"].get("service", ""), probe.get("timeoutSeconds", 1))
        return status == "SERVING", status
    path = probe["httpGet"]["path"]
    try:
        with urllib.request.urlopen(url + path, timeout=probe.get("timeoutSeconds", 1)) as response:
            return 200 <= response.status < 400, f"{response.status}"
    except urllib.error.HTTPError as error:
        return False, f"{error.code}"
    except OSError as error:
        return False, type(error).__name__


def running(container_name: str) -> bool:
    return podman("inspect", "--format", "{{.State.Running}}", container_name).strip() == "true"


def run_probe(kind: str, probe: dict, url: str, container: dict, container_name: str, started: float) -> None:
    """Probe every periodSeconds (after initialDelaySeconds) until success, or fail after
    failureThreshold misses in a row (startup; the kubelet would restart the container), or after 60
    misses (readiness: it never restarts anything, so that limit is ours)."""
    if "httpGet" not in probe and "grpc" not in probe:
        fail(f"{kind}: only httpGet and grpc probes are run here")
    action = probe.get("httpGet") or probe["grpc"]
    port = named_port(container, action["port"])
    what = f"GET {action['path']}" if "httpGet" in probe else f"gRPC health Check {action.get('service', '')!r}"
    period = probe.get("periodSeconds", 10)
    threshold = probe.get("failureThreshold", 3)
    time.sleep(max(0.0, started + probe.get("initialDelaySeconds", 0) - time.monotonic()))
    attempts = misses = 0
    limit = threshold if kind == "startupProbe" else 60
    while True:
        if not running(container_name):
            fail(f"{kind}: the container stopped before the probe succeeded")
        attempts += 1
        ok, seen = probe_once(url, probe)
        if ok:
            print(f"{kind} {what} (port {action['port']} = {port}): {seen} "
                  f"after {time.monotonic() - started:.1f} s, attempt {attempts} (period {period} s, "
                  f"timeout {probe.get('timeoutSeconds', 1)} s, failureThreshold {threshold})")
            return
        misses += 1
        if misses >= limit:
            consequence = ("the kubelet would now kill and restart the container" if kind == "startupProbe"
                           else "the pod never became Ready")
            fail(f"{kind} {what}: {misses} misses in a row (last: {seen}): {consequence}")
        time.sleep(period)


def probes(args) -> None:
    docs = documents(Path(args.manifest))
    container = the_container(docs)
    started = time.monotonic()  # kube.sh calls this right after `podman kube play` started the pod
    if "startupProbe" in container:
        run_probe("startupProbe", container["startupProbe"], args.url, container, args.container, started)
    if "readinessProbe" in container:
        # as the kubelet: once the startup probe has succeeded, after its own initialDelaySeconds
        # counted from the container's start
        readiness = container["readinessProbe"]
        url = args.grpc_address if "grpc" in readiness else args.url
        run_probe("readinessProbe", readiness, url, container, args.container, started)
    if "livenessProbe" in container:
        ok, seen = probe_once(args.url, container["livenessProbe"])
        if not ok:
            fail(f"livenessProbe GET {container['livenessProbe']['httpGet']['path']}: {seen} on a ready pod")
        print(f"livenessProbe GET {container['livenessProbe']['httpGet']['path']}: {seen}")
    print(f"Ready {time.monotonic() - started:.1f} s after the probes began")


def field(args) -> None:
    docs = documents(Path(args.manifest))
    if args.what == "kinds":
        kinds = [doc["kind"] for doc in docs]
        print(" ".join(kinds))
        return
    if args.what == "unsupported":
        print(" ".join(doc["kind"] for doc in docs if doc["kind"] not in PODMAN_KINDS))
        return
    deploy = deployment(docs)
    container = the_container(docs)
    if args.what == "prestop":
        print(json.dumps(container["lifecycle"]["preStop"]["exec"]["command"]))
    elif args.what == "grace":
        print(deploy["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30))
    elif args.what == "workers":
        print({e["name"]: e["value"] for e in container.get("env", [])}.get("WEB_CONCURRENCY", "2"))
    elif args.what == "pod":
        print(f"{deploy['metadata']['name']}-pod-0")  # podman's name for a Deployment's first pod
    elif args.what == "container":
        print(f"{deploy['metadata']['name']}-pod-0-{container['name']}")
    elif args.what == "volumes":
        print(" ".join(v["name"] for v in deploy["spec"]["template"]["spec"].get("volumes", [])))
    else:
        fail(f"unknown field {args.what!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render")
    p.add_argument("manifest")
    p.add_argument("out")
    p.add_argument("--image", required=True)
    p.add_argument("--host-port", type=int, required=True)
    p.add_argument("--grpc-host-port", type=int, required=True)
    p.add_argument("--suffix", required=True)
    p = sub.add_parser("probes")
    p.add_argument("manifest")
    p.add_argument("url")
    p.add_argument("container")
    p.add_argument("--grpc-address", required=True, help="127.0.0.1:PORT where the pod's gRPC port is published")
    p = sub.add_parser("limits")
    p.add_argument("manifest")
    p.add_argument("container")
    p = sub.add_parser("field")
    p.add_argument("manifest")
    p.add_argument("what", choices=["kinds", "unsupported", "prestop", "grace", "workers", "pod", "container",
                                    "volumes"])
    args = parser.parse_args()
    {"render": render, "probes": probes, "limits": limits, "field": field}[args.command](args)


if __name__ == "__main__":
    main()
