"""The typer option types `gk`'s embedded commands (cli/main.py) and `gk operator` (kube/cli.py) share.

It sits below both command modules (kube may not import cli) and imports nothing but typer, so `gk` start-up
pays nothing for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

LogLevel = Annotated[str, typer.Option(help="debug, info, warning, error")]
LogFormat = Annotated[str, typer.Option(help="text or json")]
NotifyFile = Annotated[
    Path | None,
    typer.Option("--notify", help="Send events to the sinks in this YAML file (webhook, Slack, DingTalk); "
                 "see docs/notifications.md.", show_default=False),
]
ApiAddr = Annotated[
    str | None,
    typer.Option("--api-addr", metavar="HOST:PORT", show_default=False,
                 help="Serve the ops API and the web dashboard on HOST:PORT (a bare PORT is loopback; port 0 picks "
                 "one); see docs/dashboard.md."),
]
ApiTokenFile = Annotated[
    Path | None,
    typer.Option("--api-token-file", show_default=False,
                 help="Bearer token for API writes (first line of FILE; default: $GAMEKEEPER_API_TOKEN). Without "
                 "one the API is read-only; a non-loopback --api-addr needs one."),
]
Dashboard = Annotated[
    bool,
    typer.Option("--dashboard", help="Serve the web dashboard (on --api-addr, default 127.0.0.1:8080) and print "
                 "its URL."),
]
