"""The ops API's address and token rules, kept apart from observe/api.py so `gk` checks its options
without importing aiohttp."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

TOKEN_ENV = "GAMEKEEPER_API_TOKEN"


def parse_api_address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` or `PORT`; without a host the API listens on loopback only."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:8080), got {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range")
    return (host.strip("[]") or "127.0.0.1"), number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_token(token_file: Path | None) -> str | None:
    """The token from --api-token-file (its first line), else $GAMEKEEPER_API_TOKEN, else None (read-only)."""
    if token_file is not None:
        try:
            text = token_file.read_text().strip().splitlines()
        except OSError as e:
            raise ValueError(f"--api-token-file {token_file}: cannot read: {e.strerror}") from None
        if not text or not text[0].strip():
            raise ValueError(f"--api-token-file {token_file}: the file is empty; put the token on its first line")
        return text[0].strip()
    return os.environ.get(TOKEN_ENV) or None


def check_api_options(address: str, token: str | None) -> tuple[str, int]:
    """ValueError (one line, with the fix) when the address is bad or exposed without a token."""
    host, port = parse_api_address(address)
    if not is_loopback(host) and not token:
        raise ValueError(
            f"--api-addr {address}: {host} is not a loopback address, so the API needs a token: pass "
            f"--api-token-file FILE or set {TOKEN_ENV}"
        )
    return host, port
