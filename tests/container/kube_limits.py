"""``kube_check limits``: the container's identity, security and resources (podman inspect, /proc inside, the
cgroup files on the host) against what deploy/kubernetes.yaml asks for; exit 1 on a mismatch, notes what
podman ignores."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .kube_manifest import deployment, documents, fail, podman, quantity, the_container

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
