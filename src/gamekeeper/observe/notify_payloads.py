"""What each sink receives: pure functions from a Notice (an event plus its GameServer) to a JSON body.

Kept apart from delivery so the exact payloads are plain data, documented in docs/notifications.md and checked
byte for byte by the tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from gamekeeper.api.models import OWNER_GSS_KEY
from gamekeeper.ports.store import EventRecord, Obj


@dataclass(frozen=True)
class ProbeResult:
    name: str
    status: str
    result: str


@dataclass(frozen=True)
class GameServerInfo:
    """The few GameServer fields on-call people need, copied at submit time (the caller's dict may change)."""

    name: str
    namespace: str
    game_server_set: str | None
    ops_state: str
    current_state: str
    probes: tuple[ProbeResult, ...] = ()

    @classmethod
    def from_object(cls, gs: Obj) -> GameServerInfo:
        meta = gs.get("metadata") or {}
        spec = gs.get("spec") or {}
        status = gs.get("status") or {}
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace") or "default"),
            game_server_set=(meta.get("labels") or {}).get(OWNER_GSS_KEY),
            # An unset opsState is "None" in OpenKruiseGame, and that is what people see in `gk get gs`.
            ops_state=str(spec.get("opsState") or "None"),
            current_state=str(status.get("currentState") or "Unknown"),
            probes=tuple(
                ProbeResult(str(c.get("name", "")), str(c.get("status", "")), str(c.get("result", "")))
                for c in status.get("serviceQualitiesConditions") or []
                if isinstance(c, dict)
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "gameServerSet": self.game_server_set,
            "opsState": self.ops_state,
            "currentState": self.current_state,
            "serviceQualitiesConditions": [
                {"name": p.name, "status": p.status, "result": p.result} for p in self.probes
            ],
        }


@dataclass(frozen=True)
class Notice:
    """One notification to one sink. `repeats` > 1 means this one also stands for folded earlier repeats."""

    event: EventRecord
    game_server: GameServerInfo | None
    game_server_set: str | None
    repeats: int = 1
    repeat_seconds: int = 0

    def fold_suffix(self) -> str:
        return f" (x{self.repeats} in the last {self.repeat_seconds}s)" if self.repeats > 1 else ""


def event_json(event: EventRecord) -> dict[str, Any]:
    return {
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "count": event.count,
        "firstTimestamp": event.first_timestamp,
        "lastTimestamp": event.last_timestamp,
        "source": event.source,
        "involvedObject": {"kind": event.kind, "namespace": event.namespace, "name": event.name},
    }


def webhook_body(notice: Notice) -> dict[str, Any]:
    return {
        "event": event_json(notice.event),
        "gameServer": notice.game_server.to_json() if notice.game_server is not None else None,
        "folded": (
            {"count": notice.repeats, "seconds": notice.repeat_seconds} if notice.repeats > 1 else None
        ),
    }


def _details(notice: Notice) -> list[tuple[str, str]]:
    gs = notice.game_server
    out: list[tuple[str, str]] = []
    if notice.game_server_set:
        out.append(("gss", notice.game_server_set))
    if gs is not None:
        out.append(("opsState", gs.ops_state))
        out.append(("state", gs.current_state))
        for probe in gs.probes:
            out.append((f"probe {probe.name}", f"{probe.status} {json.dumps(probe.result)}".strip()))
    return out


def _slack_escape(text: str) -> str:
    # Slack's three control characters in message text (its "Formatting text" reference).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(notice: Notice) -> str:
    e = notice.event
    icon = ":warning:" if e.type == "Warning" else ":information_source:"
    details = ", ".join(f"{k} {v}" for k, v in _details(notice))
    line = f"{e.type} {e.reason} on {e.kind} {e.namespace}/{e.name}"
    if details:
        line += f" ({details})"
    line += f": {e.message.strip()}{notice.fold_suffix()}"
    return f"{icon} {_slack_escape(line)}"


def slack_body(notice: Notice) -> dict[str, Any]:
    return {"text": slack_text(notice)}


def dingtalk_body(
    notice: Notice, title: str = "Gamekeeper", at_mobiles: tuple[str, ...] = (), at_all: bool = False
) -> dict[str, Any]:
    """A markdown message laid out like kube-eventer's DingTalk alert (Level, Kind, …, Message)."""
    e = notice.event
    lines = [
        f"Level: **{e.type}**",
        f"Kind: **{e.kind}**",
        f"Namespace: {e.namespace}",
        f"Name: **{e.name}**",
    ]
    labels = {"gss": "GameServerSet", "opsState": "OpsState", "state": "State"}
    for key, value in _details(notice):
        label = labels.get(key, key[:1].upper() + key[1:])
        lines.append(f"{label}: **{value}**" if key == "opsState" else f"{label}: {value}")
    lines += [
        f"Reason: **{e.reason}**",
        f"Timestamp: **{e.last_timestamp}**",
        f"Message: **{e.message.strip()}**{notice.fold_suffix()}",
    ]
    if at_mobiles:
        # DingTalk only notifies a mobile number that also appears in the text.
        lines.append(" ".join(f"@{m}" for m in at_mobiles))
    body: dict[str, Any] = {
        "msgtype": "markdown",
        # DingTalk puts a single line break only between paragraphs, so every field is its own paragraph.
        "markdown": {"title": f"{title} {e.type}: {e.reason}", "text": "\n\n".join(lines)},
    }
    if at_mobiles or at_all:
        body["at"] = {"atMobiles": list(at_mobiles), "isAtAll": at_all}
    return body


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's robot signature: base64(HMAC-SHA256(key=secret, "{timestamp}\\n{secret}")), URL-encoded."""
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}timestamp={timestamp_ms}&sign={dingtalk_sign(secret, timestamp_ms)}"
