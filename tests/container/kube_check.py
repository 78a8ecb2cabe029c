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
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

# The kinds `podman kube play` creates something for (podman 4.3 to 5.x); any other kind in a
# manifest is skipped without a word.
PODMAN_KINDS = ("Pod", "Deployment", "DaemonSet", "Job", "PersistentVolumeClaim", "ConfigMap", "Secret")
QUANTITY = re.compile(r"^([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
UNITS = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
         "Ti": 2**40}


def fail(message: str) -> None:
    print(f"kube_check: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def documents(manifest: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]


def deployment(docs: list[dict]) -> dict:
    found = [doc for doc in docs if doc.get("kind") == "Deployment"]
    if len(found) != 1:
        fail(f"expected one Deployment in the manifest, found {len(found)}")
    return found[0]


def the_container(docs: list[dict]) -> dict:
    containers = deployment(docs)["spec"]["template"]["spec"]["containers"]
    if len(containers) != 1:
        fail(f"expected one container in the Deployment, found {len(containers)}")
    return containers[0]


def quantity(value) -> float:
    """A Kubernetes quantity ("1536Mi", "500m", "2", 1) as a number."""
    match = QUANTITY.match(str(value))
    if not match:
        fail(f"cannot read the quantity {value!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def podman(*args: str) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"podman {' '.join(args)}: {done.stderr.strip()[-500:]}")
    return done.stdout


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


# ------------------------------------------------------------------------------------------ limits
def cgroup_dir(pid: int, controller: str) -> tuple[Path, bool]:
    """The cgroup folder of process ``pid`` for ``controller``, on the host, and whether it is v1."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    v1 = [line.split(":", 2)[2] for line in lines if controller in line.split(":", 2)[1].split(",")]
    if v1:
        return Path(f"/sys/fs/cgroup/{controller}{v1[0]}"), True
    unified = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
    return Path(f"/sys/fs/cgroup{unified[0]}"), False


def cgroup_values(pid: int) -> dict[str, int]:
    """memory limit and reservation (bytes), CPU quota and period (microseconds), v1 or v2."""
    memory, v1 = cgroup_dir(pid, "memory")
    read = lambda folder, name: (folder / name).read_text().strip()  # noqa: E731
    values = {"memory": int(read(memory, "memory.limit_in_bytes" if v1 else "memory.max")),
              "reservation": int(read(memory, "memory.soft_limit_in_bytes" if v1 else "memory.low"))}
    cpu, v1 = cgroup_dir(pid, "cpu")
    if v1:
        values["quota"], values["period"] = int(read(cpu, "cpu.cfs_quota_us")), int(read(cpu, "cpu.cfs_period_us"))
    else:
        quota, period = read(cpu, "cpu.max").split()
        values["quota"], values["period"] = int(quota), int(period)
    return values


# (what the manifest says, what podman or the kernel show, where that was seen, ok: None = not comparable)
Row = tuple[str, str, str, bool | None]


@dataclass
class Observed:
    """The manifest's Deployment and its container, and what podman and the kernel show of the
    running container (``name``): podman inspect, each process's /proc status, the cgroup values."""
    deploy: dict
    container: dict
    name: str
    inspect: dict
    processes: dict[str, dict[str, str]]
    cgroup: dict[str, int]

    @property
    def pod_spec(self) -> dict:
        return self.deploy["spec"]["template"]["spec"]

    @property
    def security(self) -> dict:
        return self.container.get("securityContext", {})

    def pod_or_container(self, key: str, default=None):
        """A securityContext field of the container, else of the pod."""
        return self.security.get(key, self.pod_spec.get("securityContext", {}).get(key, default))

    @property
    def host(self) -> dict:
        return self.inspect["HostConfig"]

    @property
    def config(self) -> dict:
        return self.inspect["Config"]

    @property
    def pid1(self) -> dict[str, str]:
        return self.processes.get("/proc/1/status", {})

    def ids(self, key: str) -> set[str]:
        """Every process's real ``Uid`` or ``Gid``."""
        return {values[key] for values in self.processes.values()}


def process_status(container_name: str) -> dict[str, dict[str, str]]:
    """Each process's identity and privileges inside the container, by /proc/PID/status path."""
    inside = podman("exec", container_name, "sh", "-c",
                    'for f in /proc/[0-9]*/status; do [ -r "$f" ] && grep -H -E '
                    '"^(Name|Uid|Gid|CapEff|CapBnd|NoNewPrivs|Seccomp):" "$f"; done; true')
    processes: dict[str, dict[str, str]] = {}
    for line in inside.splitlines():
        path, key, value = line.split(":", 2)
        processes.setdefault(path, {})[key] = value.split()[0] if key in ("Uid", "Gid") else value.strip()
    return processes


def observe(manifest: Path, container_name: str) -> Observed:
    docs = documents(manifest)
    inspect = json.loads(podman("inspect", container_name))[0]
    return Observed(deployment(docs), the_container(docs), container_name, inspect,
                    process_status(container_name), cgroup_values(inspect["State"]["Pid"]))


def identity_rows(seen: Observed) -> list[Row]:
    user, group = seen.pod_or_container("runAsUser"), seen.pod_or_container("runAsGroup")
    uids, gids = seen.ids("Uid"), seen.ids("Gid")
    return [(f"runAsUser {user}, runAsGroup {group}", f"User {seen.config['User']}; UIDs {sorted(uids)}, GIDs "
             f"{sorted(gids)} in {len(seen.processes)} processes", "inspect, /proc/*/status",
             uids == {str(user)} and gids == {str(group)}),
            ("runAsNonRoot: true", f"UIDs {sorted(uids)}", "/proc/*/status", "0" not in uids)]


def read_only_root_rows(seen: Observed) -> list[Row]:
    """/ refuses a write; /tmp (an emptyDir) takes one."""
    touch = subprocess.run(["podman", "exec", seen.name, "touch", "/kube-check"], capture_output=True, text=True)
    tmp = subprocess.run(["podman", "exec", seen.name, "sh", "-c", "echo x > /tmp/kube-check && rm /tmp/kube-check"],
                         capture_output=True, text=True)
    read_only = seen.host["ReadonlyRootfs"]
    return [("readOnlyRootFilesystem: true", f"ReadonlyRootfs {read_only}; touch /: "
             f"{(touch.stderr.strip().split(': ')[-1] or 'succeeded')}; /tmp (emptyDir) "
             f"{'writable' if tmp.returncode == 0 else 'NOT writable'}", "inspect, exec",
             read_only and touch.returncode != 0 and "Read-only" in touch.stderr and tmp.returncode == 0)]


def privilege_rows(seen: Observed) -> list[Row]:
    drop = seen.security.get("capabilities", {}).get("drop", [])
    escalation = seen.security.get("allowPrivilegeEscalation")
    seccomp = seen.pod_or_container("seccompProfile", {}).get("type")
    first = seen.pid1
    return [(f"capabilities drop {drop}", f"CapEff {first.get('CapEff')}, CapBnd {first.get('CapBnd')}",
             "/proc/1/status", drop == ["ALL"] and int(first.get("CapEff", "1"), 16) == 0
             and int(first.get("CapBnd", "1"), 16) == 0),
            (f"allowPrivilegeEscalation: {str(escalation).lower()}", f"NoNewPrivs {first.get('NoNewPrivs')}",
             "/proc/1/status", escalation is False and first.get("NoNewPrivs") == "1"),
            (f"seccompProfile {seccomp}", f"Seccomp {first.get('Seccomp')} (2: filtered by podman's default profile)",
             "/proc/1/status", seccomp == "RuntimeDefault" and first.get("Seccomp") == "2")]


def resource_rows(seen: Observed) -> list[Row]:
    resources, host, cgroup = seen.container.get("resources", {}), seen.host, seen.cgroup
    limit_memory = quantity(resources["limits"]["memory"])
    limit_cpu = quantity(resources["limits"]["cpu"])
    request_memory = quantity(resources["requests"]["memory"])
    cpus = cgroup["quota"] / cgroup["period"]
    return [(f"limits.memory {resources['limits']['memory']} ({limit_memory:.0f} B)",
             f"Memory {host['Memory']}; cgroup {cgroup['memory']}", "inspect, cgroup",
             host["Memory"] == limit_memory == cgroup["memory"]),
            (f"limits.cpu {resources['limits']['cpu']}", f"CpuQuota/CpuPeriod {host['CpuQuota']}/{host['CpuPeriod']}; "
             f"cgroup {cgroup['quota']}/{cgroup['period']} = {cpus:g} CPUs", "inspect, cgroup",
             host["CpuPeriod"] > 0 and host["CpuQuota"] / host["CpuPeriod"] == limit_cpu == cpus),
            (f"requests.memory {resources['requests']['memory']}", f"MemoryReservation {host['MemoryReservation']}; "
             f"cgroup {cgroup['reservation']}", "inspect, cgroup",
             host["MemoryReservation"] == request_memory == cgroup["reservation"]),
            (f"requests.cpu {resources['requests']['cpu']}", f"CpuShares {host['CpuShares']} (not set by podman; "
             "Kubernetes would set cpu.shares 1024 per core: scheduling weight only)", "inspect", None)]


def settings_rows(seen: Observed) -> list[Row]:
    """env, restart policy and grace period."""
    env = {item["name"]: item["value"] for item in seen.container.get("env", [])}
    seen_env = dict(item.split("=", 1) for item in seen.config["Env"])
    restart = seen.pod_spec.get("restartPolicy", "Always")
    grace = seen.pod_spec.get("terminationGracePeriodSeconds", 30)
    return [(f"env {', '.join(f'{k}={v}' for k, v in env.items())}",
             "all set" if all(seen_env.get(k) == v for k, v in env.items()) else f"differs: {seen.config['Env']}",
             "inspect", all(seen_env.get(k) == v for k, v in env.items())),
            (f"restartPolicy {restart} (Deployment's default)", f"RestartPolicy {seen.host['RestartPolicy']['Name']}",
             "inspect", seen.host["RestartPolicy"]["Name"] == restart.lower()),
            (f"terminationGracePeriodSeconds {grace}", f"StopTimeout {seen.config.get('StopTimeout')} (podman's own "
             "default unless it maps the field; kube.sh stops the pod with --time from the manifest)", "inspect", None)]


def volume_rows(seen: Observed) -> list[Row]:
    mounts = {mount["Destination"]: mount for mount in seen.inspect["Mounts"]}
    rows = []
    for mount in seen.container.get("volumeMounts", []):
        found = mounts.get(mount["mountPath"])
        rows.append((f"volumeMount {mount['name']} at {mount['mountPath']} (emptyDir)",
                     f"{found['Type']} {found.get('Name', '')}, {'rw' if found['RW'] else 'ro'} (sizeLimit not applied)"
                     if found else "missing", "inspect", bool(found and found["RW"])))
    return rows


def unmapped_rows(seen: Observed) -> list[Row]:
    """What podman does not map: the probes and the preStop hook (kube.sh and ``probes`` run them)."""
    container = seen.container
    health = seen.config.get("Healthcheck") or {}
    liveness = container.get("livenessProbe", {}).get("httpGet", {})
    rows = [(f"livenessProbe GET {liveness.get('path')} port {liveness.get('port')}",
             f"HEALTHCHECK {' '.join(health.get('Test', [])[1:]) or 'none'} (not run without systemd timers)",
             "inspect", None)]
    for probe in ("startupProbe", "readinessProbe"):
        if probe in container:
            action = (f"GET {container[probe]['httpGet']['path']}" if "httpGet" in container[probe]
                      else f"grpc port {container[probe]['grpc']['port']}")
            rows.append((f"{probe} {action}",
                         "not mapped by podman; run by kube_check probes", "inspect", None))
    if "lifecycle" in container:
        rows.append(("lifecycle.preStop exec", "not run by podman; kube.sh runs it before SIGTERM", "-", None))
    return rows


# The rows of `limits`, in the order they are printed.
LIMIT_CHECKS = (identity_rows, read_only_root_rows, privilege_rows, resource_rows, settings_rows, volume_rows,
                unmapped_rows)


def limits(args) -> None:
    seen = observe(Path(args.manifest), args.container)
    rows = [row for check in LIMIT_CHECKS for row in check(seen)]
    width = max(len(r[0]) for r in rows)
    for spec, shown, source, ok in rows:
        mark = "ok " if ok else "-- " if ok is None else "BAD"
        print(f"  {mark} {spec:<{width}}  {shown}   [{source}]")
    bad = [spec for spec, _, _, ok in rows if ok is False]
    if bad:
        fail(f"the pod does not run as the manifest says: {bad}")


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
