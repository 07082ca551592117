"""rich, loaded when something is first printed through it: most `gk` runs never print an error."""

from __future__ import annotations

from typing import Any


class LazyConsole:
    """A rich Console made on first use, with the arguments given here."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        self._console.print(*objects, **kwargs)


def Text(text: str, style: str = "") -> Any:
    from rich.text import Text as RichText

    return RichText(text, style=style)
