"""`gk operator` and `gk install`: the Kubernetes-mode commands (registered by gamekeeper.cli.main).

Also runnable on its own: `python -m gamekeeper.kube.cli operator ...`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gamekeeper.kube.names import DEFAULT_NAMESPACE, NAME
from gamekeeper.options import ApiAddr, ApiTokenFile, Dashboard, LogFormat, LogLevel, NotifyFile
from gamekeeper.ports.store import StoreError

# `gk` registers these commands at start-up; the Kubernetes client, aiohttp and the operator load only when one
# of them runs, so embedded-mode commands stay quick.
if TYPE_CHECKING:
    from gamekeeper.kube.client import KubeClient
    from gamekeeper.kube.operator import ProbeChoice

kube_app = typer.Typer(
    help="Kubernetes mode: run the operator, install it on a cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Kubeconfig = Annotated[
    str | None,
    typer.Option("--kubeconfig", help="Kubeconfig file (default: in-cluster credentials in a pod, else "
                 "$KUBECONFIG, else ~/.kube/config).", show_default=False),
]
Context = Annotated[str | None, typer.Option("--context", help="Kubeconfig context.", show_default=False)]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname.lower(),
                                "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data)


def _setup_logging(level: str, fmt: str) -> None:
    numeric = getattr(logging, level.upper(), None)
    if not isinstance(numeric, int):
        raise typer.BadParameter(f"unknown log level {level!r} (debug, info, warning, error)")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    elif fmt == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        raise typer.BadParameter(f"unknown log format {fmt!r} (text or json)")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _fail(message: str, code: int = 1) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


@kube_app.command()
def operator(
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", help="Watch only this namespace (default: all namespaces).", show_default=False)] = None,
    probe: Annotated[str, typer.Option(help="Probe path: auto (PodProbeMarker when OpenKruise is installed, "
                                            "else exec), kruise, or exec.")] = "auto",
    leader_elect: Annotated[bool, typer.Option(
        "--leader-elect/--no-leader-elect", help="Act only while holding the Lease (run several replicas).")] = True,
    lease_name: Annotated[str, typer.Option(help="Lease name.")] = NAME,
    lease_namespace: Annotated[str | None, typer.Option(
        help="Lease namespace (default: $POD_NAMESPACE, else gamekeeper-system).", show_default=False)] = None,
    lease_duration: Annotated[float, typer.Option(help="Seconds a standby waits on a silent leader.")] = 15.0,
    renew_deadline: Annotated[float, typer.Option(help="Seconds a leader keeps acting without renewing.")] = 10.0,
    retry_period: Annotated[float, typer.Option(help="Seconds between Lease attempts.")] = 2.0,
    identity: Annotated[str | None, typer.Option(
        help="Leader-election identity (default: $POD_NAME, else host-pid).", show_default=False)] = None,
    resync: Annotated[float, typer.Option(help="Seconds between full resyncs.", min=1)] = 300.0,
    exec_concurrency: Annotated[int, typer.Option(help="At most this many probe execs at once.", min=1)] = 32,
    health_port: Annotated[int | None, typer.Option(
        help="Serve /healthz and /readyz on this port (default: off).", show_default=False)] = None,
    health_host: Annotated[str, typer.Option(help="Address for the health endpoints.")] = "0.0.0.0",
    metrics_addr: Annotated[str | None, typer.Option(
        help="Serve Prometheus /metrics (upstream's okg_* series) on HOST:PORT while leading.",
        show_default=False)] = None,
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
    notify: NotifyFile = None,
    external_scaler_addr: Annotated[str, typer.Option(
        help="Serve KEDA's external-scaler gRPC API (OpenKruiseGame's scaler) on HOST:PORT while leading; '' turns "
        "it off. See docs/autoscaling.md.")] = "0.0.0.0:6000",
    api_addr: ApiAddr = None,
    api_token_file: ApiTokenFile = None,
    dashboard: Dashboard = False,
) -> None:
    """Run the controllers against the Kubernetes API (in a pod: in-cluster credentials).

    Metrics, the ops API and the external scaler are served only while this replica leads.
    """
    import asyncio
    import signal

    from gamekeeper.api.loading import InvalidObject
    from gamekeeper.kube.client import KubeClient
    from gamekeeper.kube.leader import LeadershipLost, LeaseTiming
    from gamekeeper.kube.operator import OperatorConfig, default_identity, run_operator
    from gamekeeper.observe.notify_config import load_notify_config
    from gamekeeper.observe.server import parse_address

    _setup_logging(log_level, log_format)
    notify_config = None
    if notify is not None:
        try:
            notify_config = load_notify_config(notify)
        except InvalidObject as err:
            raise _fail("\n".join(err.problems), 2) from None
    if probe not in ("auto", "kruise", "exec"):
        raise _fail(f"--probe must be auto, kruise or exec (got {probe!r})", 2)
    try:
        timing = LeaseTiming(lease_duration, renew_deadline, retry_period)
    except ValueError as err:
        raise _fail(str(err), 2) from None
    if metrics_addr:
        try:
            parse_address(metrics_addr)
        except ValueError as err:
            raise _fail(f"--metrics-addr: {err}", 2) from None
    if external_scaler_addr:
        try:
            host, port = parse_address(external_scaler_addr)
            external_scaler_addr = f"{host}:{port}"
        except ValueError as err:
            raise _fail(f"--external-scaler-addr: {err}", 2) from None
    from gamekeeper.observe.api_auth import check_api_options, load_token

    if dashboard and api_addr is None:
        api_addr = "127.0.0.1:8080"
    api_token = None
    if api_addr is not None:
        try:
            api_token = load_token(api_token_file)
            check_api_options(api_addr, api_token)
        except ValueError as err:
            raise _fail(str(err), 2) from None
    probe_choice: ProbeChoice = "kruise" if probe == "kruise" else "exec" if probe == "exec" else "auto"
    config = OperatorConfig(
        namespace=namespace, probe=probe_choice, leader_elect=leader_elect, lease_name=lease_name,
        lease_namespace=lease_namespace or os.environ.get("POD_NAMESPACE") or DEFAULT_NAMESPACE,
        identity=identity or default_identity(), timing=timing, resync_seconds=resync,
        exec_concurrency=exec_concurrency, health_host=health_host, health_port=health_port,
        metrics_addr=metrics_addr, notify=notify_config, external_scaler_addr=external_scaler_addr or None,
        api_addr=api_addr, api_token=api_token,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        client = await KubeClient.connect(kubeconfig, context)
        await run_operator(client, config, stop)

    try:
        asyncio.run(main())
    except LeadershipLost as err:
        # Exit so that Kubernetes restarts us as a standby: the new leader acts alone.
        raise _fail(f"leadership lost: {err}") from None
    except (StoreError, RuntimeError, OSError) as err:
        # A missing CRD, bad credentials, an unreachable API server: one line, not a traceback.
        raise _fail(str(err)) from None


async def apply_manifests(client: KubeClient, docs: list[dict[str, Any]]) -> list[str]:
    """Create or update each object, CRDs first and waiting until they are served; one kubectl-like line each."""
    from gamekeeper.kube.resources import resource_for

    lines = []
    for doc in docs:
        res = resource_for(doc["kind"])
        meta = doc["metadata"]
        namespace = meta.get("namespace") if res.namespaced else None
        existing = await client.get(res, namespace, meta["name"])
        what = f"{res.plural}.{res.group}/{meta['name']}" if res.group else f"{res.plural}/{meta['name']}"
        if existing is None:
            await client.create(res, doc)
            lines.append(f"{what} created")
        elif _contains(existing, doc):
            lines.append(f"{what} unchanged")
        else:
            body = {**doc, "metadata": {**meta, "resourceVersion": existing["metadata"]["resourceVersion"]}}
            await client.replace(res, body)
            lines.append(f"{what} configured")
        if doc["kind"] == "CustomResourceDefinition":
            await _wait_served(client, doc)
    return lines


def _contains(existing: Any, wanted: Any) -> bool:
    """Whether every field we set is already so (the server adds defaults we do not compare)."""
    if isinstance(wanted, dict):
        return isinstance(existing, dict) and all(_contains(existing.get(k), v) for k, v in wanted.items())
    return bool(existing == wanted)


async def _wait_served(client: KubeClient, crd: dict[str, Any], timeout: float = 30.0) -> None:
    group = crd["spec"]["group"]
    plural = crd["spec"]["names"]["plural"]
    version = crd["spec"]["versions"][0]["name"]
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        served = await client.served_resources(f"{group}/{version}")
        if served is not None and plural in served:
            return
        await asyncio.sleep(0.5)
    raise StoreError(f"the CRD {plural}.{group} was not served within {timeout:g}s")


@kube_app.command()
def install(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the manifests instead of applying them.")] = False,
    crds_only: Annotated[bool, typer.Option("--crds-only", help="Only the CustomResourceDefinitions.")] = False,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="The operator's namespace.")] = DEFAULT_NAMESPACE,
    image: Annotated[str | None, typer.Option(
        help="Operator image (build it with deploy/Dockerfile; default: gamekeeper:<this version>).",
        show_default=False)] = None,
    replicas: Annotated[int, typer.Option(help="Operator replicas (leader election keeps one acting).")] = 2,
    watch_namespace: Annotated[str | None, typer.Option(
        help="Manage only this namespace (RBAC bound there only).", show_default=False)] = None,
    probe: Annotated[str, typer.Option(help="auto, kruise or exec.")] = "auto",
    leader_elect: Annotated[bool, typer.Option("--leader-elect/--no-leader-elect")] = True,
    external_scaler: Annotated[bool, typer.Option(
        "--external-scaler/--no-external-scaler",
        help="KEDA's external-scaler gRPC API on port 6000 and its Service (docs/autoscaling.md).")] = True,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Install the CRDs, RBAC and the operator Deployment (or print them with --dry-run)."""
    import asyncio

    from gamekeeper.kube.client import KubeClient
    from gamekeeper.kube.manifests import DEFAULT_IMAGE, InstallOptions, all_manifests, to_yaml

    try:
        opts = InstallOptions(namespace=namespace, image=image or DEFAULT_IMAGE, replicas=replicas,
                              watch_namespace=watch_namespace, probe=probe, leader_elect=leader_elect,
                              external_scaler=external_scaler)
    except ValueError as err:
        raise _fail(str(err), 2) from None
    docs = all_manifests(opts, crds=True, operator=not crds_only)
    if dry_run:
        sys.stdout.write(to_yaml(docs))
        return

    async def main() -> list[str]:
        client = await KubeClient.connect(kubeconfig, context)
        try:
            return await apply_manifests(client, docs)
        finally:
            await client.close()

    try:
        for line in asyncio.run(main()):
            print(line)
    except (StoreError, OSError) as err:
        raise _fail(str(err)) from None


if __name__ == "__main__":
    kube_app()
