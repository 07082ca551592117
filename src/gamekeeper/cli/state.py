"""`gk state check|recover`: what to do when the state database is damaged (store/repair.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gamekeeper.embedded.home import resolve_state_dir, running_controller_pid
from gamekeeper.runtime.adoption import find_supervisors, untracked, untracked_message

state_app = typer.Typer(help="Check the state database, or recover from a damaged one.", no_args_is_help=True)

StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", help="State directory (default: $GAMEKEEPER_HOME or ./.gamekeeper).",
                 show_default=False),
]


@state_app.command("check")
def check_command(state_dir: StateDir = None) -> None:
    """Read the whole state database (a copy of it) and say what is damaged; exit 1 if anything is."""
    from gamekeeper.store.repair import check, stored_pods

    sd = resolve_state_dir(state_dir)
    lines, sound = check(sd)
    for line in lines:
        print(line)
    found = find_supervisors(sd)
    if found:
        lost = untracked(found, stored_pods(sd))
        print(f"running game server containers: {len(found)}" + (f"; {untracked_message(lost)}" if lost else ""))
        sound = sound and not lost
    print("state: sound" if sound else "state: DAMAGED (gk state recover keeps a copy and starts a new database)")
    raise typer.Exit(0 if sound else 1)


@state_app.command("recover")
def recover_command(state_dir: StateDir = None) -> None:
    """Move the database files aside (nothing is deleted) and start a new one from every readable row."""
    from gamekeeper.store.repair import recover

    sd = resolve_state_dir(state_dir)
    pid = running_controller_pid(sd)
    if pid is not None:
        print(f"error: a controller is running for {sd} (pid {pid}); stop it first (gk down stops the game servers "
              "too; kill it otherwise)")
        raise typer.Exit(1)
    for line in recover(sd):
        print(line)
