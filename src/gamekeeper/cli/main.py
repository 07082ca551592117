"""`gk`: the command line, shaped like kubectl."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gamekeeper.cli import printing
from gamekeeper.cli import selection as sel
from gamekeeper.cli.console import LazyConsole, Text
from gamekeeper.cli.rollout import rollout_app
from gamekeeper.cli.state import state_app
from gamekeeper.core.selectors import Selection
from gamekeeper.embedded.home import (
    read_config,
    remember_images,
    resolve_state_dir,
    running_api_url,
    running_controller_pid,
)
from gamekeeper.kube.cli import kube_app
from gamekeeper.options import ApiAddr, ApiTokenFile, Dashboard, LogFormat, LogLevel, NotifyFile
from gamekeeper.ports.store import Conflict, NotFound

# Start-up is part of the interface: `gk get` must feel instant, so what only some commands use (asyncio, rich,
# pydantic, the controllers, aiohttp, the Kubernetes client) is imported inside those commands.
if TYPE_CHECKING:
    import asyncio

    from gamekeeper.api.loading import LoadedObject
    from gamekeeper.observe.notify_config import NotifyConfig
    from gamekeeper.runtime.images import ImageMap
    from gamekeeper.store.sqlite import SqliteState

app = typer.Typer(
    name="gk",
    help="Gamekeeper: game servers with custom service quality (OpenKruiseGame's GameServerSet), on one machine "
    "or on Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help, as kubectl's is plain: rich's help formatter alone costs more than the rest of start-up.
    rich_markup_mode=None,
)
err = LazyConsole(stderr=True, highlight=False, soft_wrap=True)

KINDS = {
    "gs": "GameServer", "gameserver": "GameServer", "gameservers": "GameServer",
    "gss": "GameServerSet", "gameserverset": "GameServerSet", "gameserversets": "GameServerSet",
    "pod": "Pod", "pods": "Pod", "po": "Pod",
    "so": "ScaledObject", "scaledobject": "ScaledObject", "scaledobjects": "ScaledObject",
}
RESOURCE = sel.RESOURCE

StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", help="State directory (default: $GAMEKEEPER_HOME or ./.gamekeeper).",
                 show_default=False),
]
Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace.")]
MetricsAddr = Annotated[
    str | None,
    typer.Option("--metrics-addr", help="Serve /metrics, /healthz and /readyz on HOST:PORT (e.g. 127.0.0.1:9090).",
                 show_default=False),
]
HostPortRange = Annotated[
    str | None,
    typer.Option("--host-port-range", metavar="FIRST-LAST", show_default=False,
                 help="Host ports for networkType Kubernetes-HostPort (default: $GAMEKEEPER_HOST_PORT_RANGE or "
                 "8000-9000); see docs/network.md."),
]
HostPortAddress = Annotated[
    str | None,
    typer.Option("--host-port-address", metavar="ADDR", show_default=False,
                 help="Where host ports listen, and the address networkStatus shows (default: "
                 "$GAMEKEEPER_HOST_PORT_ADDRESS or 0.0.0.0, shown as 127.0.0.1)."),
]
Images = Annotated[
    Path | None,
    typer.Option("--images", help="Image map YAML (default: $GAMEKEEPER_IMAGES, images.yaml beside the applied "
                 "file, or the last one used).", show_default=False),
]


class CliError(Exception):
    pass


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(Text(f"error: {message}" if not message.startswith("error") else message, style="red"))
    return typer.Exit(code)


def _open(state_dir: Path | None) -> SqliteState:
    from gamekeeper.store.sqlite import SqliteState

    return SqliteState(resolve_state_dir(state_dir))


def _kind(word: str) -> str:
    kind = KINDS.get(word.lower())
    if kind is None:
        raise fail(f'unknown resource type "{word}"; use gs, gss, pod or so')
    return kind


def _images(state_dir: Path, explicit: Path | None, near: list[Path], required: bool) -> ImageMap:
    from gamekeeper.api.loading import InvalidObject
    from gamekeeper.runtime.images import ImageMap, find_image_map, load_image_map

    remembered = read_config(state_dir).get("images")
    path = find_image_map(explicit, near, Path(remembered) if remembered else None)
    if path is None:
        if required:
            raise fail(
                "no image map: pass --images FILE or set GAMEKEEPER_IMAGES (see examples/images.yaml for the format)"
            )
        return ImageMap.empty()
    try:
        images = load_image_map(path)
    except InvalidObject as e:
        for line in e.problems:
            err.print(Text(f"error: {line}", style="red"))
        raise typer.Exit(1) from None
    remember_images(state_dir, path)
    return images


# --- apply ---------------------------------------------------------------------------------------------------


def apply_objects(state: SqliteState, objects: list[LoadedObject]) -> list[str]:
    """Create or update each object (compare-and-swap, retried on conflict); returns kubectl-style lines."""
    lines = []
    for obj in objects:
        for _ in range(20):
            current = state.get(obj.kind, obj.namespace, obj.name)
            try:
                if current is None:
                    state.create(obj.body)
                    lines.append(f"{RESOURCE[obj.kind]}/{obj.name} created")
                    break
                desired = dict(current)
                desired["spec"] = obj.body.get("spec")
                meta = dict(current["metadata"])
                for key in ("labels", "annotations"):
                    merged = {**(meta.get(key) or {}), **(obj.body["metadata"].get(key) or {})}
                    if merged:
                        meta[key] = merged
                desired["metadata"] = meta
                if desired == current:
                    lines.append(f"{RESOURCE[obj.kind]}/{obj.name} unchanged")
                    break
                state.replace(desired)
                lines.append(f"{RESOURCE[obj.kind]}/{obj.name} configured")
                break
            except Conflict:
                continue
        else:
            raise fail(f"{obj.kind} {obj.name}: kept changing while applying; try again")
    return lines


def _load_files(files: list[Path], state_dir: Path, images_opt: Path | None) -> list[LoadedObject]:
    from gamekeeper import admission
    from gamekeeper.api.loading import InvalidObject, decode_yaml_bytes, load_documents

    problems: list[str] = []
    objects: list[LoadedObject] = []
    for file in files:
        try:
            data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
        except OSError as e:
            problems.append(f"{file}: cannot read: {e.strerror}")
            continue
        try:
            objects.extend(load_documents(decode_yaml_bytes(data, str(file)), str(file)))
        except InvalidObject as e:
            problems.extend(e.problems)
    if not problems:
        needs_images = any(o.kind == "GameServerSet" for o in objects)
        images = _images(state_dir, images_opt, [f for f in files if str(f) != "-"], required=needs_images)
        for obj in objects:
            problems.extend(admission.admit(obj, images))
    if problems:
        for line in problems:
            err.print(Text(f"error: {line}", style="red"))
        err.print(Text("nothing was applied", style="red"))
        raise typer.Exit(1)
    for obj in objects:
        for warning in obj.warnings:
            err.print(Text(f"warning: {warning}", style="yellow"))
    return objects


@app.command()
def apply(
    filename: Annotated[list[Path], typer.Option("--filename", "-f", help="YAML file(s); - for stdin.")],
    state_dir: StateDir = None,
    images: Images = None,
) -> None:
    """Create or update GameServerSets / GameServers from YAML (all-or-nothing)."""
    from gamekeeper.store.sqlite import SqliteState

    sd = resolve_state_dir(state_dir)
    objects = _load_files(filename, sd, images)
    state = SqliteState(sd)
    for line in apply_objects(state, objects):
        print(line)
    if running_controller_pid(sd) is None:
        err.print(Text("note: no controller is running; start one with `gk serve` (or `gk up FILE`)", style="dim"))


# --- controller ----------------------------------------------------------------------------------------------


def _setup_logging(level: str, fmt: str, stream: Any = None) -> None:
    from gamekeeper.cli.logs import configure_logging

    configure_logging(level, fmt, stream or sys.stderr)


def _load_notify(path: Path | None) -> NotifyConfig | None:
    """The --notify file, validated with its secrets resolved; every problem printed, then exit 1."""
    if path is None:
        return None
    from gamekeeper.api.loading import InvalidObject
    from gamekeeper.observe.notify_config import load_notify_config

    try:
        config = load_notify_config(path)
    except InvalidObject as e:
        for line in e.problems:
            err.print(Text(f"error: {line}", style="red"))
        raise typer.Exit(1) from None
    for warning in config.warnings:
        err.print(Text(f"warning: {warning}", style="yellow"))
    return config


def _api_options(api_addr: str | None, token_file: Path | None, dashboard: bool) -> tuple[str | None, str | None]:
    """The API address (None: off) and token, checked before anything starts."""
    from gamekeeper.observe.api_auth import check_api_options, load_token

    if dashboard and api_addr is None:
        api_addr = "127.0.0.1:8080"
    if api_addr is None:
        return None, None
    try:
        token = load_token(token_file)
        check_api_options(api_addr, token)
    except ValueError as e:
        raise fail(str(e)) from None
    return api_addr, token


def _print_dashboard_url(url: str) -> None:
    err.print(f"dashboard: {url}", highlight=False)


def _run_controller(
    sd: Path, images: ImageMap, live: bool, metrics_addr: str | None = None, notify: NotifyConfig | None = None,
    host_port_range: str | None = None, host_port_address: str | None = None,
    api_addr: str | None = None, api_token: str | None = None,
) -> None:
    import asyncio
    import signal

    from gamekeeper.embedded.fleet import ApiUnavailable, ControllerAlreadyRunning, EmbeddedController
    from gamekeeper.observe.server import parse_address

    if metrics_addr:
        try:
            parse_address(metrics_addr)
        except ValueError as e:
            raise fail(f"--metrics-addr: {e}") from None
    try:
        controller = EmbeddedController(sd, images, metrics_addr=metrics_addr, notify=notify,
                                        host_port_range=host_port_range, host_port_address=host_port_address,
                                        api_addr=api_addr, api_token=api_token, on_api_url=_print_dashboard_url)
    except ValueError as e:
        raise fail(str(e)) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if live:
            await asyncio.gather(controller.run(stop), _live_table(sd, stop))
        else:
            await controller.run(stop)

    try:
        asyncio.run(main())
    except (ControllerAlreadyRunning, ApiUnavailable) as e:
        raise fail(str(e)) from None
    if live:
        print("controller stopped; game servers keep running (gk down stops them)")


async def _live_table(sd: Path, stop: asyncio.Event) -> None:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from gamekeeper.store.sqlite import SqliteState, Waker

    state = SqliteState(sd)
    waker = Waker(state.watch_dir)
    console = Console()
    footer = "\n\n(Ctrl-C stops the controller; game servers keep running)"
    try:
        if console.is_terminal:
            with Live(console=console, auto_refresh=False, transient=False) as live:
                while not stop.is_set():
                    live.update(Text(_gs_table(state, None, wide=False) + footer), refresh=True)
                    await waker.wait(1.0)
        else:
            # Piped output (a log, `tee`): print the table whenever it changes, ignoring the ticking AGE.
            last = ""
            while not stop.is_set():
                text = _gs_table(state, None, wide=False)
                key = "\n".join(line.rsplit(None, 1)[0] if line.split() else line for line in text.splitlines())
                if key != last:
                    print(text + "\n", flush=True)
                    last = key
                await waker.wait(1.0)
    finally:
        waker.close()
        state.close()


@app.command()
def serve(
    state_dir: StateDir = None,
    images: Images = None,
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
    metrics_addr: MetricsAddr = None,
    notify: NotifyFile = None,
    host_port_range: HostPortRange = None,
    host_port_address: HostPortAddress = None,
    api_addr: ApiAddr = None,
    api_token_file: ApiTokenFile = None,
    dashboard: Dashboard = False,
) -> None:
    """Run the controller in the foreground (no table). Game servers survive its exit."""
    sd = resolve_state_dir(state_dir)
    api, token = _api_options(api_addr, api_token_file, dashboard)
    image_map = _images(sd, images, [], required=True)
    notify_config = _load_notify(notify)
    _setup_logging(log_level, log_format)
    _run_controller(sd, image_map, live=False, metrics_addr=metrics_addr, notify=notify_config,
                    host_port_range=host_port_range, host_port_address=host_port_address, api_addr=api,
                    api_token=token)


@app.command()
def up(
    files: Annotated[list[Path], typer.Argument(help="YAML files to apply.")],
    state_dir: StateDir = None,
    images: Images = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run the controller in the background.")] = False,
    metrics_addr: MetricsAddr = None,
    notify: NotifyFile = None,
    host_port_range: HostPortRange = None,
    host_port_address: HostPortAddress = None,
    api_addr: ApiAddr = None,
    api_token_file: ApiTokenFile = None,
    dashboard: Dashboard = False,
) -> None:
    """Apply FILES, then run the controller with a live table (Ctrl-C stops the controller only)."""
    from gamekeeper.embedded.fleet import resolve_host_ports
    from gamekeeper.store.sqlite import SqliteState

    sd = resolve_state_dir(state_dir)
    api, token = _api_options(api_addr, api_token_file, dashboard)
    try:
        resolve_host_ports(host_port_range, host_port_address)  # before anything is applied
    except ValueError as e:
        raise fail(str(e)) from None
    notify_config = _load_notify(notify)  # before anything is applied: a bad --notify file changes nothing
    objects = _load_files(files, sd, images)
    state = SqliteState(sd)
    for line in apply_objects(state, objects):
        print(line)
    state.close()
    image_map = _images(sd, images, files, required=True)
    if running_controller_pid(sd) is not None:
        print(f"controller already running (pid {running_controller_pid(sd)})")
        return
    if detach:
        pid = start_background_controller(sd, image_map, metrics_addr, notify.resolve() if notify else None,
                                          host_port_range, host_port_address, api,
                                          api_token_file.resolve() if api_token_file else None)
        print(f"controller started in the background (pid {pid}); logs: {sd / 'controller.log'}")
        if api is not None:
            url = _wait_api_url(sd)
            print(f"dashboard: {url}" if url else f"the API did not start; see {sd / 'controller.log'}")
        return
    _setup_logging("warning", "text", open(sd / "controller.log", "a"))  # noqa: SIM115 - lives as long as the process
    _run_controller(sd, image_map, live=True, metrics_addr=metrics_addr, notify=notify_config,
                    host_port_range=host_port_range, host_port_address=host_port_address, api_addr=api,
                    api_token=token)


def start_background_controller(
    sd: Path, image_map: ImageMap, metrics_addr: str | None = None, notify: Path | None = None,
    host_port_range: str | None = None, host_port_address: str | None = None,
    api_addr: str | None = None, api_token_file: Path | None = None,
) -> int:
    import subprocess
    import time

    log_file = open(sd / "controller.log", "ab")  # noqa: SIM115 - handed to the child
    cmd = [sys.executable, "-m", "gamekeeper", "serve", "--state-dir", str(sd)]
    if api_addr:
        cmd += ["--api-addr", api_addr]  # a token from $GAMEKEEPER_API_TOKEN reaches the child by inheritance
    if api_token_file is not None:
        cmd += ["--api-token-file", str(api_token_file)]
    if metrics_addr:
        cmd += ["--metrics-addr", metrics_addr]
    if host_port_range:
        cmd += ["--host-port-range", host_port_range]
    if host_port_address:
        cmd += ["--host-port-address", host_port_address]
    if notify is not None:
        cmd += ["--notify", str(notify)]  # the child inherits the environment, so urlFrom: {env: …} resolves
    if image_map.source is not None:
        cmd += ["--images", str(image_map.source)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                            start_new_session=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if running_controller_pid(sd) is not None:
            return proc.pid
        if proc.poll() is not None:
            lines = (sd / "controller.log").read_text(errors="replace").strip().splitlines()
            last = lines[-1].removeprefix("error: ") if lines else ""
            raise fail(f"the controller exited at once (code {proc.returncode}): {last}; see "
                       f"{sd / 'controller.log'}")
        time.sleep(0.05)
    return proc.pid


def _wait_api_url(sd: Path, timeout: float = 15.0) -> str | None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = running_api_url(sd)
        if url:
            return url
        time.sleep(0.05)
    return None


@app.command()
def dashboard(
    state_dir: StateDir = None,
    images: Images = None,
    api_addr: ApiAddr = None,
    api_token_file: ApiTokenFile = None,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open it in a web browser.")] = False,
) -> None:
    """Print (or open) the web dashboard's URL; starts a controller serving it if none is running."""
    sd = resolve_state_dir(state_dir)
    url = running_api_url(sd)
    if url is None:
        if running_controller_pid(sd) is not None:
            raise fail(f"the controller running for {sd} (pid {running_controller_pid(sd)}) serves no dashboard; "
                       "restart it with --dashboard (gk down stops everything; or stop `gk serve` and run "
                       "`gk serve --dashboard`)")
        api, _ = _api_options(api_addr or "127.0.0.1:0", api_token_file, True)
        image_map = _images(sd, images, [], required=True)
        pid = start_background_controller(sd, image_map, api_addr=api,
                                          api_token_file=api_token_file.resolve() if api_token_file else None)
        print(f"controller started in the background (pid {pid}); logs: {sd / 'controller.log'}")
        url = _wait_api_url(sd)
        if url is None:
            raise fail(f"the dashboard did not come up; see {sd / 'controller.log'}")
    print(url)
    if open_browser:
        import webbrowser

        webbrowser.open(url)


@app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop the controller and every game server, and remove the fleet's objects (events are kept)."""
    import sqlite3

    from gamekeeper.embedded.fleet import stop_controller, stop_game_servers, stop_untracked_game_servers
    from gamekeeper.store.integrity import StateDamaged
    from gamekeeper.store.sqlite import SqliteState

    sd = resolve_state_dir(state_dir)
    if stop_controller(sd):
        print("controller stopped")
    try:
        state = SqliteState(sd)
        stopped = stop_game_servers(state)
    except (StateDamaged, sqlite3.DatabaseError) as e:
        # The processes are found from their pod directories; the damaged database is left as it is.
        count = stop_untracked_game_servers(sd)
        where = str(e).split(". ", 1)[0] if isinstance(e, StateDamaged) else f"{sd / 'state.db'} is damaged ({e})"
        err.print(Text(f"warning: {where}", style="yellow"))  # what is wrong, not the fixes
        print(f"stopped the game servers of {count} pod director(ies); the state database was left as it is")
        return
    for kind in ("ScaledObject", "Pod", "GameServer", "Workload", "GameServerSet"):
        for obj in state.list(kind):
            meta = obj["metadata"]
            with contextlib.suppress(NotFound):
                if meta.get("finalizers"):
                    state.patch(kind, meta["namespace"], meta["name"], {"metadata": {"finalizers": None}})
                state.delete(kind, meta["namespace"], meta["name"])
    print(f"stopped {len(stopped)} game server(s)" + (f": {', '.join(stopped)}" if stopped else ""))


# --- reading -------------------------------------------------------------------------------------------------


def _gs_table(
    state: SqliteState, namespace: str | None, wide: bool, name: str | None = None,
    items: list[dict[str, Any]] | None = None, show_labels: bool = False,
) -> str:
    now = datetime.now(UTC)
    if items is None:
        items = [g for g in sel.select(state, "GameServer", namespace) if name is None or g["metadata"]["name"] == name]
    if not items:
        return sel.no_resources(namespace)
    pods = {}
    if wide:
        pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in state.list("Pod", namespace)}
    rows = [printing.gs_row(g, now, wide, pods.get((g["metadata"]["namespace"], g["metadata"]["name"])))
            for g in items]
    headers = printing.GS_WIDE_HEADERS if wide else printing.GS_HEADERS
    return printing.table(*printing.with_labels(headers, rows, items, show_labels))


@dataclass(frozen=True)
class _Query:
    """What `gk get` lists: one name, or everything the selectors match, in name or --sort-by order."""

    name: str | None = None
    selection: Selection | None = None
    sort_by: str | None = None
    show_labels: bool = False


def _get_objects(state: SqliteState, kind: str, namespace: str | None, query: _Query) -> list[dict[str, Any]]:
    if query.name is not None:
        obj = state.get(kind, namespace or "default", query.name)
        if obj is None:
            raise fail(f'{RESOURCE[kind]} "{query.name}" not found', code=1)
        return [obj]
    try:
        return sel.select(state, kind, namespace, query.selection, query.sort_by)
    except sel.SelectionError as e:
        raise fail(str(e)) from None


def _render(state: SqliteState, kind: str, namespace: str | None, query: _Query, output: str | None) -> str:
    if output not in (None, "wide", "name", "json", "yaml"):
        raise fail(f'unknown output format "{output}"; use wide, yaml, json or name')
    items = _get_objects(state, kind, namespace, query)
    if output in ("json", "yaml"):
        return printing.to_output(items, output, single=query.name is not None)
    if not items:
        return sel.no_resources(namespace)
    if output == "name":
        return "\n".join(f"{RESOURCE[kind]}/{o['metadata']['name']}" for o in items)
    now = datetime.now(UTC)
    wide = output == "wide"
    if kind == "GameServer":
        return _gs_table(state, namespace, wide, items=items, show_labels=query.show_labels)
    if kind == "GameServerSet":
        headers = printing.GSS_WIDE_HEADERS if wide else printing.GSS_HEADERS
        rows = [printing.gss_row(o, now, wide) for o in items]
    elif kind == "ScaledObject":
        headers, rows = printing.SO_HEADERS, [printing.so_row(o, now) for o in items]
    else:
        headers, rows = printing.POD_HEADERS, [printing.pod_row(o, now) for o in items]
    return printing.table(*printing.with_labels(headers, rows, items, query.show_labels))


Selector = Annotated[
    str | None,
    typer.Option("--selector", "-l", show_default=False,
                 help="Label selector, as kubectl takes it: 'k=v', 'k!=v', 'k in (a,b)', 'k notin (a)', 'k', '!k'."),
]
FieldSelectorOpt = Annotated[
    str | None,
    typer.Option("--field-selector", show_default=False,
                 help="Field selector: 'spec.opsState=WaitToBeDeleted', 'status.currentState!=Ready', "
                 "'gss=NAME' (see docs/selectors.md for the fields)."),
]


def _warn_untracked(state: SqliteState) -> None:
    """Running game servers are never invisible: those the store lost are named (runtime/adoption.py)."""
    from gamekeeper.runtime.adoption import find_supervisors, untracked, untracked_message

    found = find_supervisors(state.state_dir)
    lost = untracked(found, state.keys("Pod")) if found else []
    if lost:
        err.print(Text(f"warning: {untracked_message(lost)}", style="yellow"))


@app.command()
def get(
    resource: Annotated[str, typer.Argument(help="gs, gss, pod or so (scaledobject)")],
    name: Annotated[str | None, typer.Argument()] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="wide, yaml, json or name")] = None,
    selector: Selector = None,
    field_selector: FieldSelectorOpt = None,
    sort_by: Annotated[str | None, typer.Option(
        "--sort-by", show_default=False,
        help="Sort by a JSONPath field, e.g. '{.spec.deletionPriority}' or .metadata.name.")] = None,
    show_labels: Annotated[bool, typer.Option("--show-labels", help="Add a LABELS column.")] = False,
    namespace: Namespace = "default",
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Print again whenever something changes.")] = False,
    state_dir: StateDir = None,
) -> None:
    """List or show objects, like kubectl get."""
    kind = _kind(resource)
    if name is not None and (selector or field_selector):
        raise fail("name cannot be provided when a selector is specified")
    try:
        selection = sel.parse_selection(kind, selector, field_selector)
    except sel.SelectionError as e:
        raise fail(str(e)) from None
    query = _Query(name, selection, sort_by, show_labels)
    state = _open(state_dir)
    ns = None if all_namespaces else namespace
    print(_render(state, kind, ns, query, output))
    if kind in ("GameServer", "Pod"):
        _warn_untracked(state)
    if not watch:
        return
    from gamekeeper.store.sqlite import Waker

    waker = Waker(state.watch_dir)
    last = state.current_rv()
    try:
        while True:
            waker.wait_blocking(5.0)
            changes, _ = state.changes_since(last)
            if changes:
                last = changes[-1].resource_version
            if any(c.kind == kind for c in changes):
                print()
                print(_render(state, kind, ns, query, output))
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        waker.close()


@app.command()
def describe(
    resource: Annotated[str, typer.Argument(help="gs or gss")],
    name: Annotated[str, typer.Argument()],
    namespace: Namespace = "default",
    state_dir: StateDir = None,
) -> None:
    """Spec, status, each service quality's last result and times, and recent events."""
    from gamekeeper.cli.describe import describe_gs, describe_gss

    kind = _kind(resource)
    state = _open(state_dir)
    obj = _get_objects(state, kind, namespace, _Query(name))[0]
    events = state.list_events(namespace, kind, name)
    if kind == "GameServer":
        print(describe_gs(obj, state.get("Pod", namespace, name), events, datetime.now(UTC)))
    elif kind == "GameServerSet":
        print(describe_gss(obj, events, datetime.now(UTC)))
    else:
        print(printing.to_output([obj], "yaml", single=True))


@app.command()
def events(
    namespace: Namespace = "default",
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep printing new events.")] = False,
    type_: Annotated[str | None, typer.Option("--type", help="Normal or Warning")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="Only events of KIND/NAME, e.g. gs/minecraft-1")] = None,
    state_dir: StateDir = None,
) -> None:
    """Events, oldest first, like kubectl events."""
    from gamekeeper.store.sqlite import Waker

    state = _open(state_dir)
    ns = None if all_namespaces else namespace
    kind = name = None
    if for_:
        word, _, name = for_.partition("/")
        kind = _kind(word)
    headers = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    if all_namespaces:
        headers = ["NAMESPACE", *headers]

    def rows(records: list[Any]) -> list[list[str]]:
        now = datetime.now(UTC)
        out = []
        for r in records:
            if type_ and r.type != type_:
                continue
            seen = printing.human_duration((now - datetime.fromisoformat(r.last_timestamp.replace("Z", "+00:00")))
                                           .total_seconds())
            obj = f"{RESOURCE.get(r.kind, r.kind.lower()).split('.')[0]}/{r.name}"
            row = [seen, r.type, r.reason, obj, r.message + (f" (x{r.count})" if r.count > 1 else "")]
            out.append([r.namespace, *row] if all_namespaces else row)
        return out

    records = state.list_events(ns, kind, name)
    body = rows(records)
    if body:
        print(printing.table(headers, body))
    elif not watch:
        print("No events found" + (f" in {ns} namespace." if ns else "."))
    if not watch:
        return
    last = max((r.resource_version for r in records), default=state.current_rv())
    waker = Waker(state.watch_dir)
    printed_header = bool(body)
    try:
        while True:
            waker.wait_blocking(5.0)
            new = state.list_events(ns, kind, name, since_rv=last)
            if not new:
                continue
            last = max(r.resource_version for r in new)
            lines = rows(new)
            if lines:
                text = printing.table(headers, lines).splitlines()
                print("\n".join(text if not printed_header else text[1:]))
                printed_header = True
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        waker.close()


# --- writing ---------------------------------------------------------------------------------------------------


@app.command()
def scale(
    resource: Annotated[str, typer.Argument(help="gss")],
    name: Annotated[str, typer.Argument()],
    replicas: Annotated[int, typer.Option("--replicas", min=0, help="The new number of game servers.")],
    namespace: Namespace = "default",
    state_dir: StateDir = None,
) -> None:
    """Set a GameServerSet's replicas; scale-in removes Kill, then WaitToBeDeleted, … Maintaining last."""
    if _kind(resource) != "GameServerSet":
        raise fail("only gss can be scaled")
    state = _open(state_dir)
    try:
        state.patch("GameServerSet", namespace, name, {"spec": {"replicas": replicas}})
    except NotFound:
        raise fail(f'gameserverset.game.kruise.io "{name}" not found') from None
    print(f"gameserverset.game.kruise.io/{name} scaled")
    owner = next((so for so in state.list("ScaledObject", namespace)
                  if so["spec"]["scaleTargetRef"]["name"] == name), None)
    if owner is not None:
        err.print(Text(f"warning: scaledobject.keda.sh/{owner['metadata']['name']} scales this set: it will override "
                       "--replicas at its next poll (delete the ScaledObject to scale by hand)", style="yellow"))


def _patch_body(patch_text: str) -> dict[str, Any]:
    from gamekeeper import admission
    from gamekeeper.api.loading import InvalidObject

    try:
        return admission.parse_patch(patch_text)
    except InvalidObject as e:
        raise fail(e.problems[0]) from None


def _write_each(
    state: SqliteState, kind: str, objects: list[dict[str, Any]], change: sel.Change, done: str,
    describe: Callable[[sel.Outcome], str], namespace: str, missing: list[str] | None = None,
    validate: sel.Validator | None = None,
) -> None:
    """Apply one change to every object and print a kubectl line per object; exit 1 if any failed."""
    code = 0
    for name in missing or []:
        err.print(Text(f'Error from server (NotFound): {RESOURCE[kind]} "{name}" not found', style="red"))
        code = 1
    if not objects and not missing:
        print(sel.no_resources(namespace))
        return
    try:
        outcomes = sel.apply_each(state, kind, objects, change, validate=validate)
    except sel.NothingWritten as e:
        for name, problem in e.problems:
            err.print(Text(f"error: {RESOURCE[kind]}/{name}: {problem}", style="red"))
        raise fail(f"nothing was {done}") from None
    for o in outcomes:
        if o.error:
            err.print(Text(f"error: {RESOURCE[kind]}/{o.name}: {o.error}", style="red"))
            code = 1
        else:
            print(f"{RESOURCE[kind]}/{o.name} {describe(o)}")
    if code:
        raise typer.Exit(code)


@app.command()
def patch(
    resource: Annotated[str, typer.Argument(help="gs, gss, pod or so")],
    names: Annotated[list[str] | None, typer.Argument(help="Names; or select with -l / --field-selector.")] = None,
    patch_text: Annotated[str, typer.Option("--patch", "-p", help="The patch, as JSON.")] = "",
    type_: Annotated[str, typer.Option("--type", help="Only merge is supported.")] = "merge",
    selector: Selector = None,
    field_selector: FieldSelectorOpt = None,
    namespace: Namespace = "default",
    state_dir: StateDir = None,
) -> None:
    """JSON merge patch, to named objects or to every match; each result is validated before anything is written."""
    kind = _kind(resource)
    if type_ != "merge":
        raise fail(f'--type {type_} is not supported; use --type merge (a JSON merge patch, RFC 7386)')
    if not patch_text:
        raise fail("--patch is required, e.g. -p '{\"spec\":{\"opsState\":\"Kill\"}}'")
    body = _patch_body(patch_text)
    state = _open(state_dir)
    try:
        objects, missing = sel.targets(state, kind, namespace, names or [], selector, field_selector)
    except sel.SelectionError as e:
        raise fail(str(e)) from None
    # The image map apply used (remembered in the state directory); without one there is nothing to check against.
    found = _images(state.state_dir, None, [], required=False) if kind != "GameServer" else None
    images = found if found is not None and found.source is not None else None
    _write_each(state, kind, objects, lambda _obj: body, "patched",
                lambda o: "patched" if o.changed else "patched (no change)", namespace, missing,
                validate=sel.admission_validator(kind, images))


def _metadata_command(
    field: str, verb: str, resource: str, args: list[str], overwrite: bool, selector: str | None,
    field_selector: str | None, all_: bool, namespace: str, state_dir: Path | None,
) -> None:
    kind = _kind(resource)
    names = [a for a in args if "=" not in a and not a.endswith("-")]
    specs = [a for a in args if a not in names]
    try:
        add, remove = sel.parse_pairs(specs, verb, validate_values=field == "labels")
    except sel.SelectionError as e:
        raise fail(str(e)) from None
    state = _open(state_dir)
    try:
        objects, missing = sel.targets(state, kind, namespace, names, selector, field_selector, all_)
    except sel.SelectionError as e:
        raise fail(str(e)) from None
    notes: list[str] = []
    change = sel.metadata_change(field, add, remove, overwrite, notes)
    _write_each(state, kind, objects, change, sel.past(verb), lambda o: sel.metadata_verb(field, verb, o), namespace,
                missing)
    for note in dict.fromkeys(notes):
        print(note)


Overwrite = Annotated[bool, typer.Option("--overwrite", help="Allow replacing a key that already has a value.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every object of the kind in the namespace.")]


@app.command()
def label(
    resource: Annotated[str, typer.Argument(help="gs, gss or pod")],
    args: Annotated[list[str], typer.Argument(help="NAME... KEY=VALUE... KEY-... (no names with -l).")],
    overwrite: Overwrite = False,
    selector: Selector = None,
    field_selector: FieldSelectorOpt = None,
    all_: AllOpt = False,
    namespace: Namespace = "default",
    state_dir: StateDir = None,
) -> None:
    """Set (KEY=VALUE) or remove (KEY-) labels, like kubectl label."""
    _metadata_command("labels", "label", resource, args, overwrite, selector, field_selector, all_, namespace,
                      state_dir)


@app.command()
def annotate(
    resource: Annotated[str, typer.Argument(help="gs, gss or pod")],
    args: Annotated[list[str], typer.Argument(help="NAME... KEY=VALUE... KEY-... (no names with -l).")],
    overwrite: Overwrite = False,
    selector: Selector = None,
    field_selector: FieldSelectorOpt = None,
    all_: AllOpt = False,
    namespace: Namespace = "default",
    state_dir: StateDir = None,
) -> None:
    """Set (KEY=VALUE) or remove (KEY-) annotations, like kubectl annotate."""
    _metadata_command("annotations", "annotate", resource, args, overwrite, selector, field_selector, all_,
                      namespace, state_dir)


@app.command()
def delete(
    resource: Annotated[str, typer.Argument(help="gs, gss, pod or so")],
    names: Annotated[list[str] | None, typer.Argument(help="Names; or select with -l / --field-selector.")] = None,
    selector: Selector = None,
    field_selector: FieldSelectorOpt = None,
    namespace: Namespace = "default",
    state_dir: StateDir = None,
) -> None:
    """Delete objects. A deleted pod is recreated on the same ordinal; deleting a gss removes its fleet."""
    kind = _kind(resource)
    state = _open(state_dir)
    try:
        objects, missing = sel.targets(state, kind, namespace, names or [], selector, field_selector)
    except sel.SelectionError as e:
        raise fail(str(e)) from None
    if not objects and not missing:
        print(sel.no_resources(namespace))
        return
    code = 0
    for name in missing:
        err.print(Text(f'error: {RESOURCE[kind]} "{name}" not found', style="red"))
        code = 1
    for obj in objects:
        name = obj["metadata"]["name"]
        try:
            # The version that matched: a server changed since (say, no longer idle) is not deleted by mistake.
            state.delete(kind, namespace, name, resource_version=obj["metadata"]["resourceVersion"]
                         if selector or field_selector else None)
            print(f'{RESOURCE[kind]} "{name}" deleted')
        except NotFound:
            err.print(Text(f'error: {RESOURCE[kind]} "{name}" not found', style="red"))
            code = 1
        except Conflict:
            err.print(Text(f'error: {RESOURCE[kind]} "{name}" changed since it was selected; not deleted (run the '
                           "command again to re-select)", style="red"))
            code = 1
    if code:
        raise typer.Exit(code)


# --- game server processes -------------------------------------------------------------------------------------


def _pod_for(state: SqliteState, namespace: str, name: str) -> dict[str, Any]:
    pod = state.get("Pod", namespace, name)
    if pod is None:
        raise fail(f'game server "{name}" has no pod (is it in namespace {namespace}? see gk get gs)')
    return pod


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="The game server (pod) name.")],
    container: Annotated[str | None, typer.Option("--container", "-c")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    tail: Annotated[int, typer.Option("--tail", help="Lines from the end; -1 for all.")] = -1,
    namespace: Namespace = "default",
    state_dir: StateDir = None,
) -> None:
    """Print a container's log (stdout and stderr of all its runs)."""
    import time

    from gamekeeper.runtime.local import LocalPaths

    state = _open(state_dir)
    pod = _pod_for(state, namespace, name)
    names = [c["name"] for c in pod["spec"]["containers"]]
    if container is None:
        container = names[0]
    elif container not in names:
        raise fail(f'container "{container}" is not in {name} (containers: {", ".join(names)})')
    path = LocalPaths(state.state_dir).log_file(pod, container)
    if not path.exists():
        raise fail(f"no log yet for {name}/{container} (has the controller started it?)")
    with open(path, "rb") as f:
        data = f.read()
        lines = data.splitlines(keepends=True)
        sys.stdout.buffer.write(b"".join(lines[-tail:] if tail >= 0 else lines))
        sys.stdout.flush()
        if not follow:
            return
        try:
            while True:
                chunk = f.read()
                if chunk:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            pass


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec(
    name: Annotated[str, typer.Argument(help="The game server (pod) name.")],
    command: Annotated[list[str], typer.Argument(help="The command, after --.")],
    container: Annotated[str | None, typer.Option("--container", "-c")] = None,
    namespace: Namespace = "default",
    state_dir: StateDir = None,
) -> None:
    """Run a command in a game server's container (its directory and environment), like kubectl exec."""
    import subprocess

    from gamekeeper.ports.runtime import ContainerNotRunning
    from gamekeeper.runtime.local import LocalRuntime
    from gamekeeper.store.sqlite import SqliteState

    sd = resolve_state_dir(state_dir)
    state = SqliteState(sd)
    pod = _pod_for(state, namespace, name)
    runtime = LocalRuntime(sd, _images(sd, None, [], required=True), spawner=False)
    try:
        cwd, env = runtime.exec_context(pod, container)
    except ContainerNotRunning as e:
        raise fail(str(e)) from None
    try:
        proc = subprocess.run(command, cwd=cwd, env=env, check=False)
    except FileNotFoundError:
        raise fail(f'exec: "{command[0]}": executable file not found in $PATH') from None
    raise typer.Exit(proc.returncode)


@app.command()
def demo(
    scenario: Annotated[str, typer.Argument(
        help="idle (the seed's first scenario), healthy (the second), recovery (the second, repaired "
             "automatically, docs/recovery.md) or autoscale (docs/autoscaling.md)")] = "idle",
    state_dir: StateDir = None,
    keep: Annotated[bool, typer.Option(help="Leave the fleet running at the end.")] = False,
) -> None:
    """Run one of the seed's scenarios end to end, printing each command and its output."""
    from gamekeeper.cli.demo import run_demo

    code = run_demo(scenario, resolve_state_dir(state_dir), keep)
    raise typer.Exit(code)


app.add_typer(kube_app)
app.add_typer(rollout_app, name="rollout")
app.add_typer(state_app, name="state")


def main() -> None:
    try:
        app()
    except Exception as e:
        # pydantic, sqlite3 and the store are loaded only by the commands that use them; their errors are reported
        # like ours when they were.
        pydantic = sys.modules.get("pydantic")
        integrity = sys.modules.get("gamekeeper.store.integrity")
        sqlite3 = sys.modules.get("sqlite3")
        if sqlite3 is not None and isinstance(e, sqlite3.DatabaseError):
            # A damaged page met by a query (opening reads only the first pages).
            from gamekeeper.store.integrity import FIX
            from gamekeeper.store.sqlite import SqliteState

            where = SqliteState.opened or "the state database"
            err.print(Text(f"error: {where} is damaged ({e}). {FIX}", style="red"))
            sys.exit(1)
        ports = sys.modules.get("gamekeeper.ports.store")
        if not (isinstance(e, CliError) or (pydantic is not None and isinstance(e, pydantic.ValidationError))
                or (integrity is not None and isinstance(e, integrity.StateDamaged))
                or (ports is not None and isinstance(e, ports.StoreDamaged))):
            raise
        err.print(Text(f"error: {e}", style="red"))
        sys.exit(1)


if __name__ == "__main__":
    main()

