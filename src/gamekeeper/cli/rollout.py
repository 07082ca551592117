"""`gk rollout status|pause|resume gss NAME`: follow and steer a GameServerSet's rolling update (kubectl rollout).

This module imports nothing from `cli/main.py` (which registers it), so either can be imported first; the state
directory, the store and its change notifications come from where `cli/main.py` takes them too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gamekeeper.api.keys import WORKLOAD_HASH_KEY
from gamekeeper.cli.console import LazyConsole, Text
from gamekeeper.embedded.home import resolve_state_dir, running_controller_pid
from gamekeeper.ports.store import Conflict
from gamekeeper.store.sqlite import SqliteState, Waker

if TYPE_CHECKING:
    from gamekeeper.core.update import RolloutStatus

rollout_app = typer.Typer(
    name="rollout",
    help="Follow, pause and resume the rolling update of a GameServerSet (after its template changed).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = LazyConsole(stderr=True, highlight=False, soft_wrap=True)

Resource = Annotated[str, typer.Argument(help="gss (the only kind with rollouts)")]
Name = Annotated[str, typer.Argument(help="The GameServerSet.")]
Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace.")]
StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", help="State directory (default: $GAMEKEEPER_HOME or ./.gamekeeper).",
                 show_default=False),
]

GSS_WORDS = {"gss", "gameserverset", "gameserversets"}
RESOURCE = "gameserverset.game.kruise.io"


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(Text(f"error: {message}", style="red"))
    return typer.Exit(code)


def _open(resource: str, state_dir: Path | None) -> SqliteState:
    if resource.lower() not in GSS_WORDS:
        raise _fail(f'rollout works on gss (GameServerSets), not "{resource}"')
    return SqliteState(resolve_state_dir(state_dir))


def current_status(state: SqliteState, namespace: str, name: str) -> RolloutStatus:
    """Where the rollout stands, from the GameServerSet and its workload (not from the lagging set status)."""
    from gamekeeper.control.gameserverset import workload_hash
    from gamekeeper.core.update import parse_update_strategy, revision_name, rollout_status

    gss = state.get("GameServerSet", namespace, name)
    if gss is None:
        raise _fail(f'{RESOURCE} "{name}" not found')
    workload = state.get("Workload", namespace, name)
    strategy = parse_update_strategy(gss["spec"].get("updateStrategy"))
    status: dict[str, Any] = {}
    observed = False
    if workload is not None:
        status = workload.get("status") or {}
        meta = workload["metadata"]
        # Observed: the workload carries the set's current template and strategy, and its status was computed
        # from that very workload, for its current template revision.
        observed = (
            (meta.get("annotations") or {}).get(WORKLOAD_HASH_KEY) == workload_hash(gss)
            and status.get("observedGeneration") == meta.get("generation", 1)
            and status.get("updateRevision") == revision_name(name, workload["spec"]["template"])
        )
    return rollout_status(f'{RESOURCE.split(".")[0]} "{name}"', gss["spec"]["replicas"], strategy, status, observed)


def _detail(s: RolloutStatus) -> str:
    text = f"updated {s.updated}/{s.target}  ready {s.ready}/{s.replicas}"
    return text + ("  [yellow](paused)[/yellow]" if s.paused else "")


@rollout_app.command()
def status(
    resource: Resource,
    name: Name,
    watch: Annotated[bool, typer.Option("--watch/--no-watch", "-w",
                                        help="Follow until the rollout is done (Ctrl-C stops following).")] = True,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds (0: never).", min=0)] = 0,
    namespace: Namespace = "default",
    state_dir: StateDir = None,
) -> None:
    """Follow the rollout with a progress bar (updated, ready, total) until it is done.

    Done, exit 0: every game server outside the partition runs the new template and is ready. With --no-watch,
    print where it stands and exit 1 while it is not done.
    """
    state = _open(resource, state_dir)
    current = current_status(state, namespace, name)
    if not watch or current.done:
        print(current.message)
        raise typer.Exit(0 if current.done else 1)
    if running_controller_pid(state.state_dir) is None:
        err.print(Text("note: no controller is running, so nothing will move; start one with `gk serve`",
                       style="dim"))
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    deadline = time.monotonic() + timeout if timeout else None
    waker = Waker(state.watch_dir)
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"), console=Console(highlight=False),
    )
    try:
        with progress:
            task = progress.add_task(name, total=max(current.target, 1), completed=0, detail="")
            while True:
                done_count = min(current.updated_ready, current.target)
                progress.update(task, total=max(current.target, 1), completed=done_count, detail=_detail(current))
                if current.done:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    progress.stop()
                    print(current.message)
                    raise _fail("timed out waiting for the condition")
                waker.wait_blocking(1.0)
                current = current_status(state, namespace, name)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        waker.close()
    print(current.message)


def _set_paused(resource: str, name: str, namespace: str, state_dir: Path | None, paused: bool) -> None:
    state = _open(resource, state_dir)
    word = "paused" if paused else "resumed"
    for _ in range(20):
        gss = state.get("GameServerSet", namespace, name)
        if gss is None:
            raise _fail(f'{RESOURCE} "{name}" not found')
        strategy = gss["spec"].get("updateStrategy") or {}
        if strategy.get("type") == "OnDelete" and strategy.get("rollingUpdate") is None:
            raise _fail(f'{RESOURCE} "{name}" uses updateStrategy OnDelete: there is no rollout to pause or resume')
        if bool((strategy.get("rollingUpdate") or {}).get("paused")) == paused:
            raise _fail(f'{RESOURCE} "{name}" is {"already paused" if paused else "not paused"}')
        try:
            # Compare-and-swap on the version read above: a concurrent `gk apply` is never overwritten.
            state.patch("GameServerSet", namespace, name,
                        {"spec": {"updateStrategy": {"rollingUpdate": {"paused": paused}}}},
                        resource_version=gss["metadata"]["resourceVersion"])
        except Conflict:
            continue
        print(f"{RESOURCE}/{name} {word}")
        return
    raise _fail("the GameServerSet kept changing; try again")


@rollout_app.command()
def pause(resource: Resource, name: Name, namespace: Namespace = "default", state_dir: StateDir = None) -> None:
    """Stop the rolling update where it is: no further game server starts updating (one restarting finishes)."""
    _set_paused(resource, name, namespace, state_dir, True)


@rollout_app.command()
def resume(resource: Resource, name: Name, namespace: Namespace = "default", state_dir: StateDir = None) -> None:
    """Let a paused rolling update go on."""
    _set_paused(resource, name, namespace, state_dir, False)
