"""Kubernetes mode at scale: the real `gk operator` against an emulated API holding 1,000 and 10,000 game servers.

The API is bench/kube_emulator.py, in this process on 127.0.0.1; the operator is a separate process (`gk
operator --probe kruise --no-leader-elect`), so its memory and its requests are its own. With the
PodProbeMarker path, kruise-daemon's part is played by this program: it writes the probe's pod condition
(`game.kruise.io/idle`) itself, as kruise-daemon would after a probe, and a kubelet double marks created pods
running.

For each size:
1. build: a GameServerSet of 3 replicas, built by a first operator from nothing; its RSS after settling is the
   baseline. The fleet is then grown to N in the emulator by copying server 1 (pod and GameServer, new names
   and uids; the set's and the workload's replicas and counts), as if the operator had built it; building
   10,000 through the API would take most of the run and is not what is measured here;
2. first full sync: a fresh operator starts against the N servers: seconds to /readyz (caches synced) and to
   settled (no write for 3 s), and the requests it made meanwhile (writes show a cache that disagreed);
3. steady window: nothing changes for `--window` seconds, with a resync inside it (`--resync`): API requests
   counted (watch streams re-opened included), reported per minute; it should be 0;
4. changes: `--flips` pods get the probe result `active` (opsState WaitToBeDeleted -> None), one every
   `--spacing` s; the latency is from the condition's write in the API to the pod patch carrying
   `game.kruise.io/gs-opsState: None` arriving at the API (OKG #321's figure), p50/p99/max, and the requests
   made for them, per change;
5. RSS per game server: (operator RSS at N - the build operator's at 3) / (N - 3), both after settling.

    python -m bench.kube_scale [--sizes 1000,10000] [--window 60] [--resync 30] [--flips 100] [--quick]

With `--paths exec` the operator probes through pods/exec instead (`--probe exec`); the emulator answers each
exec at once with the pod's current probe output.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import copy
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.common import ROOT, Table, median, percentile
from bench.harness import gss_yaml
from bench.kube_emulator import Emulator, Obj

NAMESPACE = "bench"
SET = "gss"
BUILD = 3
CONDITION = "game.kruise.io/idle"
OPS_LABEL = "game.kruise.io/gs-opsState"
GK = Path(sys.executable).parent / "gk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def write_kubeconfig(directory: Path, url: str) -> Path:
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "bench", "user": {}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "bench"}}],
    }))
    return path


def running_status(pod: Obj, message: str) -> dict[str, Any]:
    """A started pod's status, with the probe's condition as kruise-daemon writes it."""
    return {
        "phase": "Running", "podIP": "10.0.0.1",
        "conditions": [{"type": "Ready", "status": "True"},
                       {"type": CONDITION, "status": "True", "message": message}],
        "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "ready": True, "started": True,
                               "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}
                              for c in pod["spec"]["containers"]],
    }


class Kubelet:
    """Marks a created pod running a moment after it is created, as a separate write; on the kruise path with the
    probe's condition `idle` as well (kruise-daemon's first probe)."""

    def __init__(self, emulator: Emulator, condition: bool) -> None:
        self.emulator = emulator
        self.condition = condition
        emulator.on_write.append(self.on_write)

    def on_write(self, verb: str, plural: str, obj: Obj) -> None:
        if verb == "POST" and plural == "pods":
            meta = obj["metadata"]
            asyncio.get_running_loop().call_later(0.01, self.start, meta["namespace"], meta["name"])

    def start(self, namespace: str, name: str) -> None:
        pod = self.emulator.objects["pods"].get((namespace, name))
        if pod is None:
            return
        new = copy.deepcopy(pod)
        new["spec"]["nodeName"] = "node-1"
        new["status"] = running_status(new, "idle")
        if not self.condition:
            new["status"]["conditions"] = new["status"]["conditions"][:1]
        self.emulator.put("KUBELET", self.emulator.resources[("", "v1", "pods")], new, "MODIFIED",
                          {"spec": {"nodeName": "node-1"}, "status": new["status"]}, "status")


class Operator:
    """`gk operator` in its own process."""

    def __init__(self, kubeconfig: Path, resync: float, log: Path, probe: str) -> None:
        self.kubeconfig, self.resync, self.log, self.probe = kubeconfig, resync, log, probe
        self.health = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.started = 0.0

    async def start(self) -> None:
        self.started = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                str(GK), "operator", "--kubeconfig", str(self.kubeconfig), "-n", NAMESPACE, "--no-leader-elect",
                "--probe", self.probe, "--external-scaler-addr", "", "--resync", str(self.resync),
                "--health-port", str(self.health), "--health-host", "127.0.0.1", "--log-level", "warning",
                stdout=log, stderr=log, cwd=ROOT)

    async def ready(self, timeout: float) -> float:
        """Seconds from the start to /readyz answering 200."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise RuntimeError(f"gk operator exited ({self.proc.returncode}); see {self.log}")
                try:
                    async with session.get(f"http://127.0.0.1:{self.health}/readyz") as resp:
                        if resp.status == 200:
                            return time.monotonic() - self.started
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"gk operator not ready after {timeout:.0f} s; see {self.log}")

    def rss(self) -> int:
        assert self.proc is not None
        return rss_of(self.proc.pid)

    def cpu(self) -> float:
        """User + system CPU seconds of the operator so far."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def idle(self, timeout: float, window: float = 1.0, busy: float = 0.05) -> float:
        """Seconds from the start until the operator's CPU falls below `busy` of a core over `window` (the
        reconciles after the first listing are done: they write nothing when the fleet agrees, so only the
        CPU shows them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before, at = self.cpu(), time.monotonic()
            await asyncio.sleep(window)
            if self.cpu() - before < busy * window:
                return at - self.started
        raise RuntimeError(f"gk operator still busy after {timeout:.0f} s")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def quiet(emulator: Emulator, seconds: float, timeout: float, since: float | None = None) -> float:
    """Wait until nothing has been written for `seconds`; the time of the last write (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = emulator.last_write
        if time.monotonic() - last >= seconds and (since is None or last >= since):
            return last
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the API was still being written after {timeout:.0f} s")


def grow(emulator: Emulator, size: int) -> None:
    """Copy server 1 to ordinals BUILD..size-1 and scale the set's and workload's counts, as if built."""
    pods, gss_objs = emulator.objects["pods"], emulator.objects["gameservers"]
    pod1, gs1 = pods[(NAMESPACE, f"{SET}-1")], gss_objs[(NAMESPACE, f"{SET}-1")]
    for i in range(BUILD, size):
        name = f"{SET}-{i}"
        pod = copy.deepcopy(pod1)
        meta = pod["metadata"]
        meta.update(name=name, uid=str(uuid.uuid4()))
        meta["labels"]["statefulset.kubernetes.io/pod-name"] = name
        pod["spec"]["hostname"] = name
        gs = copy.deepcopy(gs1)
        gs["metadata"].update(name=name, uid=str(uuid.uuid4()))
        gs["metadata"]["ownerReferences"][0].update(name=name, uid=meta["uid"])
        emulator.put("COPY", emulator.resources[("", "v1", "pods")], pod, "ADDED")
        emulator.put("COPY", emulator.resources[("game.kruise.io", "v1alpha1", "gameservers")], gs, "ADDED")
    for plural, group, version in (("gameserversets", "game.kruise.io", "v1alpha1"),
                                   ("workloads", "gamekeeper.io", "v1alpha1")):
        obj = copy.deepcopy(emulator.objects[plural][(NAMESPACE, SET)])
        obj["spec"]["replicas"] = size
        obj["status"] = {k: size if v == BUILD else v for k, v in obj["status"].items()}
        emulator.put("COPY", emulator.resources[(group, version, plural)], obj, "ADDED")


def counted(emulator: Emulator) -> collections.Counter[tuple[str, str, str]]:
    return collections.Counter(emulator.requests)


def delta(after: collections.Counter[tuple[str, str, str]], before: collections.Counter[tuple[str, str, str]]
          ) -> dict[str, int]:
    diff = after - before
    return {f"{verb} {plural}{'/' + sub if sub else ''}": n for (verb, plural, sub), n in sorted(diff.items())}


def without_exec(requests: dict[str, int]) -> int:
    return sum(n for k, n in requests.items() if not k.startswith("EXEC"))


async def wait_built(emulator: Emulator, count: int, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        built = [g for g in emulator.objects["gameservers"].values()
                 if g["spec"].get("opsState") == "WaitToBeDeleted"]
        if len(built) == count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the build operator did not make {count} WaitToBeDeleted servers in {timeout:.0f} s; "
                       f"see {log}")


async def run_size(size: int, path: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    emulator = Emulator(kruise=path == "kruise")
    modes: dict[str, bytes] = {}  # the exec path's probe output per pod (`cat mode`); idle unless flipped
    emulator.exec_answer = lambda namespace, pod, container, argv: (0, modes.get(pod, b"idle"))
    url = await emulator.start()
    Kubelet(emulator, condition=path == "kruise")
    kubeconfig = write_kubeconfig(workdir, url)
    log = workdir / f"operator-{size}-{path}.log"
    result: dict[str, Any] = {"size": size, "path": path}
    try:
        doc = yaml.safe_load(gss_yaml(SET, BUILD, "bench/sleep", ["cat", "mode"], args.period))
        doc["metadata"]["namespace"] = NAMESPACE
        emulator.seed("GameServerSet", doc)
        builder = Operator(kubeconfig, args.resync, log, path)
        await builder.start()
        await builder.ready(120)
        await wait_built(emulator, BUILD, 120, log)
        await quiet(emulator, 3.0, 120)
        base_rss = builder.rss()
        await builder.stop()
        grow(emulator, size)

        # 2. first full sync
        before = counted(emulator)
        operator = Operator(kubeconfig, args.resync, log, path)
        await operator.start()
        result["ready_s"] = await operator.ready(args.timeout)
        # The exec path probes all the time (that is its nature), so its CPU never falls idle.
        result["busy_s"] = await operator.idle(args.timeout) if path == "kruise" else float("nan")
        result["sync_cpu_s"] = operator.cpu()
        last = await quiet(emulator, 3.0, args.timeout)
        result["settled_s"] = max(last - operator.started, result["ready_s"])
        sync = delta(counted(emulator), before)
        result["sync_requests"] = sync
        result["sync_writes"] = sum(n for k, n in sync.items() if not k.startswith(("GET", "WATCH", "EXEC")))
        result["rss"] = operator.rss()
        result["base_rss"] = base_rss
        result["kb_per_gs"] = (result["rss"] - base_rss) / (size - BUILD) / 1024

        # 3. steady window
        before = counted(emulator)
        await asyncio.sleep(args.window)
        steady = delta(counted(emulator), before)
        result["steady_requests"] = steady
        result["steady_per_minute"] = without_exec(steady) * 60 / args.window
        result["exec_per_minute"] = steady.get("EXEC pods", 0) * 60 / args.window

        # 4. changes
        pods_res = emulator.resources[("", "v1", "pods")]
        flipped: dict[str, float] = {}
        decided: dict[str, float] = {}  # the GameServer's opsState None written
        seen: dict[str, float] = {}

        def on_write(verb: str, plural: str, obj: Obj) -> None:
            name = obj["metadata"]["name"]
            if plural == "gameservers" and verb == "PATCH" and name in flipped and name not in decided and \
                    (obj.get("spec") or {}).get("opsState") == "None":
                decided[name] = time.monotonic()
            if plural == "pods" and verb == "PATCH" and name in flipped and name not in seen and \
                    (obj["metadata"].get("labels") or {}).get(OPS_LABEL) == "None":
                seen[name] = time.monotonic()

        emulator.on_write.append(on_write)
        flips = min(args.flips, size - BUILD)
        names = [f"{SET}-{i}" for i in range(BUILD, BUILD + flips)]
        before = counted(emulator)
        for name in names:
            flipped[name] = time.monotonic()
            if path == "exec":
                modes[name] = b"active"  # seen at the pod's next probe
            else:
                pod = copy.deepcopy(emulator.objects["pods"][(NAMESPACE, name)])
                pod["status"] = running_status(pod, "active")
                written = {"status": {"conditions": pod["status"]["conditions"]}}
                emulator.put("KRUISE", pods_res, pod, "MODIFIED", written, "status")
            await asyncio.sleep(args.spacing)
        deadline = time.monotonic() + args.timeout
        while len(seen) < len(names) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await quiet(emulator, 3.0, args.timeout)
        changes = delta(counted(emulator), before)
        latencies = [seen[n] - flipped[n] for n in names if n in seen]
        pushes = [seen[n] - decided[n] for n in names if n in seen and n in decided]
        result.update(flips=flips, seen=len(latencies), change_requests=changes,
                      requests_per_change=without_exec(changes) / flips if flips else float("nan"),
                      latency_p50=median(latencies), latency_p99=percentile(latencies, 99),
                      latency_max=max(latencies) if latencies else float("nan"),
                      push_p50=median(pushes), push_p99=percentile(pushes, 99))
        await operator.stop()
    finally:
        await emulator.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="game servers per run (default 1000,10000)")
    parser.add_argument("--paths", default="kruise,exec", help="probe paths (default kruise,exec)")
    parser.add_argument("--period", type=int, default=10, help="the probe's periodSeconds (default 10)")
    parser.add_argument("--window", type=float, default=60.0, help="steady window in seconds (default 60)")
    parser.add_argument("--resync", type=float, default=30.0, help="the operator's --resync (default 30)")
    parser.add_argument("--flips", type=int, default=100, help="probe results changed (default 100)")
    parser.add_argument("--spacing", type=float, default=0.1, help="seconds between two changes (default 0.1)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--quick", action="store_true", help="100 servers, short windows (a smoke run)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.window, args.resync, args.flips, args.spacing, args.period = "100", 4.0, 2.0, 10, 0.05, 2
    sizes = [int(s) for s in args.sizes.split(",") if s]
    paths = [p for p in args.paths.split(",") if p]
    if any(s <= BUILD for s in sizes):
        parser.error(f"--sizes: each size must be above {BUILD} (the built part of the fleet)")
    if any(p not in ("kruise", "exec") for p in paths):
        parser.error("--paths: kruise and/or exec")
    table = Table(
        "kube_scale",
        f"Kubernetes mode: gk operator against an emulated API (probe period {args.period} s; steady window "
        f"{args.window:g} s with --resync {args.resync:g})",
        ["game servers", "probe path", "ready s", "busy s", "sync writes", "RSS MiB", "KB/GS", "steady req/min",
         "exec/min", "req/change", "changes seen", "label p50 s", "p99 s", "max s", "opsState->label p50 s", "p99 s"],
        params=vars(args) | {"out": str(args.out) if args.out else None},
    )
    with tempfile.TemporaryDirectory(prefix="gk-kube-scale-") as tmp:
        for size in sizes:
            for path in paths:
                r = asyncio.run(run_size(size, path, args, Path(tmp)))
                table.add(size, path, r["ready_s"], r["busy_s"], r["sync_writes"], r["rss"] / 2**20, r["kb_per_gs"],
                          r["steady_per_minute"], r["exec_per_minute"], r["requests_per_change"],
                          f"{r['seen']}/{r['flips']}", r["latency_p50"], r["latency_p99"], r["latency_max"],
                          r["push_p50"], r["push_p99"])
                table.params.setdefault("raw", []).append(r)
                print(f"  {size} {path}: sync {r['sync_requests']}; steady {r['steady_requests']}; "
                      f"changes {r['change_requests']}", flush=True)
    table.notes += [
        "ready: operator process start -> /readyz 200 (every cache listed); busy: -> its CPU below 5 % of a core "
        "over 1 s (the reconciles of the listed fleet done; not for exec, which probes all the time); "
        "sync writes: its API writes until 3 s without one (0: it agreed with the fleet it found)",
        f"KB/GS: (operator RSS at N - the RSS of an operator that built {BUILD} servers) / (N - {BUILD}), both "
        "settled, no heap trim (a separate process)",
        "steady req/min: API requests in the window but pods/exec (watches re-opened included), per minute; "
        "exec/min: the exec path's probes (one pods/exec each)",
        "req/change: API requests but pods/exec, from the first probe-result change until 3 s without a write, "
        "per change; label: probe result changed in the API (kruise: the pod condition written; exec: the "
        "answer changed, so it includes the wait for the next probe) -> pod patch with gs-opsState None "
        "arriving at the API; opsState->label: the GameServer's patch to opsState None arriving -> that pod "
        "patch arriving (OKG #321's figure)",
    ]
    table.emit(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
