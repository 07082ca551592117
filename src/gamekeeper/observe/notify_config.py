"""The notification config file (`--notify FILE`): sinks, their filters, the delivery policy, and secrets.

```yaml
sinks:
  - name: oncall-slack
    type: slack                          # webhook | slack | dingtalk
    urlFrom: {env: GK_SLACK_WEBHOOK_URL} # or {file: path}; `url:` inline works but is warned about
    filter: {types: [Warning], reasons: [GsStateChanged], namespaces: [default], gameServerSets: [minecraft]}
```

Validation is strict like the objects' (docs/objects.md): YAML types as written, unknown fields are errors, and
every problem is one line naming the field path. Secrets (sink URLs, which carry tokens; DingTalk signing
secrets; webhook header values) are read once at load, held as `SecretStr`, and every string that could reach
a log line, an error or the dead-letter file goes through a `Redactor` built from them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.alias_generators import to_camel

from gamekeeper.api.loading import InvalidObject, format_validation_error, parse_yaml_documents

EVENT_TYPES = ("Normal", "Warning")
SINK_TYPES = ("webhook", "slack", "dingtalk")
DOCS = "docs/notifications.md"
REDACTED = "<redacted>"

# Header names whose values are credentials: an inline value is warned about and kept secret. A value from
# valueFrom is always secret; an inline value of another header (`X-Team: games`) is plain configuration, and
# redacting it would blank out fleet data that happens to contain the same word.
_SENSITIVE_HEADER = re.compile(r"auth|token|key|secret|signature|cookie|password|session", re.IGNORECASE)
# Pieces of a secret shorter than this are not scrubbed on their own (a 2-character query value would turn
# every log line into confetti); whole secrets are always scrubbed whatever their length.
_MIN_PIECE = 4
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token


class _Model(BaseModel):
    """Strict, camelCase keys only, unknown fields rejected (like gamekeeper.api.models.Model)."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, validate_default=False)


class SecretSourceModel(_Model):
    env: str | None = Field(default=None, min_length=1)
    file: str | None = Field(default=None, min_length=1)


class HeaderModel(_Model):
    name: str = Field(min_length=1)
    value: SecretStr | None = None
    value_from: SecretSourceModel | None = None


class FilterModel(_Model):
    # Absent means "any", except types, which defaults to Warning only (see DEFAULT_TYPES).
    types: list[Literal["Normal", "Warning"]] | None = Field(default=None, min_length=1)
    reasons: list[str] | None = Field(default=None, min_length=1)
    namespaces: list[str] | None = Field(default=None, min_length=1)
    kinds: list[str] | None = Field(default=None, min_length=1)
    game_server_sets: list[str] | None = Field(default=None, min_length=1)


class DeliveryModel(_Model):
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    max_attempts: int = Field(default=5, ge=1, le=100)
    initial_backoff_seconds: float = Field(default=1.0, gt=0, le=3600)
    max_backoff_seconds: float = Field(default=60.0, gt=0, le=3600)


class _SinkModel(_Model):
    name: str | None = Field(default=None, min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    url: SecretStr | None = None
    url_from: SecretSourceModel | None = None
    filter: FilterModel | None = None
    delivery: DeliveryModel | None = None


class WebhookSinkModel(_SinkModel):
    type: Literal["webhook"]
    headers: list[HeaderModel] | None = None


class SlackSinkModel(_SinkModel):
    type: Literal["slack"]


class DingTalkSinkModel(_SinkModel):
    type: Literal["dingtalk"]
    secret: SecretStr | None = None
    secret_from: SecretSourceModel | None = None
    title: str = Field(default="Gamekeeper", min_length=1)
    at_mobiles: list[str] | None = None
    at_all: bool = False


_SINK_MODELS: dict[str, type[_SinkModel]] = {
    "webhook": WebhookSinkModel, "slack": SlackSinkModel, "dingtalk": DingTalkSinkModel,
}


class NotifyFileModel(_Model):
    # Sinks are validated one by one (see _load_sink) so that an error says `sinks[1].urlFrom`, not the
    # `sinks[1].slack.urlFrom` a pydantic discriminated union would report.
    sinks: list[dict[str, Any]] = Field(min_length=1)
    queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    workers: int = Field(default=1, ge=1, le=32)
    fold_window_seconds: float = Field(default=60.0, ge=0, le=86_400)
    dead_letter_file: str | None = Field(default=None, min_length=1)
    delivery: DeliveryModel | None = None


# -- the resolved configuration -----------------------------------------------------------------------------

DEFAULT_TYPES = frozenset({"Warning"})


@dataclass(frozen=True)
class EventFilter:
    """Which events a sink wants; None means any. A gss filter matches only events whose gss is known."""

    types: frozenset[str] = DEFAULT_TYPES
    reasons: frozenset[str] | None = None
    namespaces: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    game_server_sets: frozenset[str] | None = None

    def matches(self, type: str, reason: str, namespace: str, kind: str, game_server_set: str | None) -> bool:
        return (
            type in self.types
            and (self.reasons is None or reason in self.reasons)
            and (self.namespaces is None or namespace in self.namespaces)
            and (self.kinds is None or kind in self.kinds)
            and (self.game_server_sets is None or (game_server_set or "") in self.game_server_sets)
        )


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_seconds: float = 5.0
    max_attempts: int = 5
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0


def safe_url(url: str) -> str:
    """What of a sink URL may be shown: scheme, host and port (the path and query carry the tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return REDACTED
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


@dataclass(frozen=True)
class Header:
    name: str
    value: SecretStr
    secret: bool = True


@dataclass(frozen=True, repr=False)
class SinkConfig:
    name: str
    type: str
    url: SecretStr
    filter: EventFilter = EventFilter()
    delivery: DeliveryPolicy = DeliveryPolicy()
    headers: tuple[Header, ...] = ()
    secret: SecretStr | None = None
    title: str = "Gamekeeper"
    at_mobiles: tuple[str, ...] = ()
    at_all: bool = False

    def __repr__(self) -> str:
        return f"SinkConfig(name={self.name!r}, type={self.type!r}, url={safe_url(self.url.get_secret_value())!r})"

    __str__ = __repr__

    def secrets(self) -> list[str]:
        """Every secret string of this sink, for the Redactor."""
        out = [self.url.get_secret_value()]
        out += [h.value.get_secret_value() for h in self.headers if h.secret]
        if self.secret is not None:
            out.append(self.secret.get_secret_value())
        return out


@dataclass(frozen=True, repr=False)
class NotifyConfig:
    sinks: tuple[SinkConfig, ...]
    queue_size: int = 1000
    workers: int = 1
    fold_window_seconds: float = 60.0
    dead_letter_file: Path | None = None
    source: Path | None = None
    warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"NotifyConfig(source={str(self.source) if self.source else None!r}, sinks={list(self.sinks)!r})"

    __str__ = __repr__

    def secrets(self) -> list[str]:
        return [s for sink in self.sinks for s in sink.secrets()]


class Redactor:
    """Replaces every secret, and the forms it takes once quoted or JSON-escaped, with `<redacted>`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        pieces: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            pieces.update(_variants(secret))
            for piece in _url_pieces(secret):
                if len(piece) >= _MIN_PIECE:
                    pieces.update(_variants(piece))
        ordered = sorted(pieces, key=len, reverse=True)  # longest first, so a URL goes before its query value
        self._pattern = re.compile("|".join(re.escape(p) for p in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(REDACTED, text)

    def __repr__(self) -> str:
        return "Redactor(<secrets hidden>)"


def _variants(text: str) -> set[str]:
    return {text, quote(text, safe=""), quote_plus(text), json.dumps(text)[1:-1]}


def _url_pieces(text: str) -> list[str]:
    try:
        parts = urlsplit(text)
    except ValueError:
        return []
    if not parts.scheme or not parts.netloc:
        return []
    pieces = [parts.path, parts.query, parts.path + ("?" + parts.query if parts.query else "")]
    pieces += [value for _, value in parse_qsl(parts.query, keep_blank_values=False)]
    if parts.password:
        pieces.append(parts.password)
    return pieces


# -- loading ------------------------------------------------------------------------------------------------


def load_notify_config(path: Path, environ: Mapping[str, str] | None = None) -> NotifyConfig:
    """Read, validate and resolve a notification config; raise InvalidObject with one line per problem.

    Relative `file:` paths and `deadLetterFile` are relative to the config file's directory.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise InvalidObject([f"{path}: cannot read the notification config: {err.strerror}"]) from None
    return parse_notify_config(text, str(path), path.resolve().parent, environ)


def parse_notify_config(
    text: str, source: str, base_dir: Path, environ: Mapping[str, str] | None = None
) -> NotifyConfig:
    env = os.environ if environ is None else environ
    prefix = f"{source}: "
    docs = parse_yaml_documents(text, source)
    if len(docs) != 1:
        raise InvalidObject([f"{prefix}expected one YAML document with `sinks:` (see {DOCS})"])
    problems: list[str] = []
    try:
        top = NotifyFileModel.model_validate(docs[0])
    except ValidationError as err:
        raise InvalidObject(_format(prefix, err)) from None
    default_delivery = _delivery(top.delivery, DeliveryPolicy())
    warnings: list[str] = []
    sinks: list[SinkConfig] = []
    names: dict[str, int] = {}
    for i, raw in enumerate(top.sinks):
        where = f"{prefix}sinks[{i}]"
        sink = _load_sink(raw, where, base_dir, env, default_delivery, problems, warnings)
        if sink is None:
            continue
        if sink.name in names:
            problems.append(
                f"{where}.name: {sink.name!r} is already the name of sinks[{names[sink.name]}]; "
                "give each sink its own name"
            )
        names.setdefault(sink.name, i)
        sinks.append(sink)
    if top.delivery is not None and top.delivery.max_backoff_seconds < top.delivery.initial_backoff_seconds:
        problems.append(f"{prefix}delivery.maxBackoffSeconds: must be >= initialBackoffSeconds")
    if problems:
        raise InvalidObject(problems)
    dead_letter = (base_dir / top.dead_letter_file) if top.dead_letter_file else None
    return NotifyConfig(
        sinks=tuple(sinks), queue_size=top.queue_size, workers=top.workers,
        fold_window_seconds=top.fold_window_seconds, dead_letter_file=dead_letter,
        source=Path(source), warnings=tuple(warnings),
    )


def _format(prefix: str, err: ValidationError) -> list[str]:
    # The shared formatter points unknown fields at the objects' reference; this file has its own.
    return [line.replace("see docs/objects.md", f"see {DOCS}") for line in format_validation_error(prefix, err)]


def _delivery(model: DeliveryModel | None, base: DeliveryPolicy) -> DeliveryPolicy:
    """Fields set in `model` override `base` (a sink's `delivery` overrides only what it names)."""
    if model is None:
        return base
    given = model.model_fields_set
    return DeliveryPolicy(
        timeout_seconds=model.timeout_seconds if "timeout_seconds" in given else base.timeout_seconds,
        max_attempts=model.max_attempts if "max_attempts" in given else base.max_attempts,
        initial_backoff_seconds=(
            model.initial_backoff_seconds if "initial_backoff_seconds" in given else base.initial_backoff_seconds
        ),
        max_backoff_seconds=model.max_backoff_seconds if "max_backoff_seconds" in given else base.max_backoff_seconds,
    )


def _load_sink(
    raw: dict[str, Any],
    where: str,
    base_dir: Path,
    env: Mapping[str, str],
    default_delivery: DeliveryPolicy,
    problems: list[str],
    warnings: list[str],
) -> SinkConfig | None:
    kind = raw.get("type")
    model_type = _SINK_MODELS.get(kind) if isinstance(kind, str) else None
    if model_type is None:
        shown = "nothing" if kind is None else json.dumps(kind) if isinstance(kind, str) else "a " + type(kind).__name__
        problems.append(f"{where}.type: expected one of {', '.join(SINK_TYPES)}, got {shown}")
        return None
    try:
        model = model_type.model_validate(raw)
    except ValidationError as err:
        problems.extend(_format(f"{where}.", err))
        return None
    kind = str(kind)
    before = len(problems)
    url = _secret(model.url, model.url_from, "url", "urlFrom", where, base_dir, env, problems, warnings, True)
    if url is not None:
        _check_url(url, kind, where, "url" if model.url is not None else "urlFrom", problems)
    headers: list[Header] = []
    secret: SecretStr | None = None
    extra: dict[str, Any] = {}
    if isinstance(model, WebhookSinkModel):
        for j, header in enumerate(model.headers or []):
            if not _HEADER_NAME.match(header.name):
                problems.append(f"{where}.headers[{j}].name: {json.dumps(header.name)} is not a valid HTTP header name")
            sensitive = bool(_SENSITIVE_HEADER.search(header.name))
            value = _secret(
                header.value, header.value_from, "value", "valueFrom", f"{where}.headers[{j}]", base_dir, env,
                problems, warnings, sensitive,
            )
            if value is not None:
                if "\n" in value.get_secret_value() or "\r" in value.get_secret_value():
                    problems.append(f"{where}.headers[{j}]: the value must be one line")
                headers.append(Header(header.name, value, secret=sensitive or header.value_from is not None))
    if isinstance(model, DingTalkSinkModel):
        if model.secret is not None or model.secret_from is not None:
            secret = _secret(
                model.secret, model.secret_from, "secret", "secretFrom", where, base_dir, env, problems, warnings,
                True,
            )
        extra = {"title": model.title, "at_mobiles": tuple(model.at_mobiles or ()), "at_all": model.at_all}
    delivery = _delivery(model.delivery, default_delivery)
    if model.delivery is not None and delivery.max_backoff_seconds < delivery.initial_backoff_seconds:
        problems.append(f"{where}.delivery.maxBackoffSeconds: must be >= initialBackoffSeconds")
    if len(problems) > before or url is None:
        return None
    flt = model.filter or FilterModel()
    return SinkConfig(
        name=model.name or kind,
        type=kind,
        url=url,
        filter=EventFilter(
            types=frozenset(flt.types) if flt.types is not None else DEFAULT_TYPES,
            reasons=_set(flt.reasons),
            namespaces=_set(flt.namespaces),
            kinds=_set(flt.kinds),
            game_server_sets=_set(flt.game_server_sets),
        ),
        delivery=delivery,
        headers=tuple(headers),
        secret=secret,
        **extra,
    )


def _set(values: list[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _secret(
    inline: SecretStr | None,
    source: SecretSourceModel | None,
    inline_field: str,
    from_field: str,
    where: str,
    base_dir: Path,
    env: Mapping[str, str],
    problems: list[str],
    warnings: list[str],
    warn_inline: bool,
) -> SecretStr | None:
    """Resolve `x` / `xFrom: {env|file}`; problems never quote the secret itself."""
    if inline is not None and source is not None:
        problems.append(f"{where}: give either {inline_field} or {from_field}, not both")
        return None
    if inline is not None:
        if not inline.get_secret_value():
            problems.append(f"{where}.{inline_field}: must not be empty")
            return None
        if warn_inline:
            warnings.append(
                f"{where}.{inline_field}: a secret written inline; prefer {from_field}: {{env: NAME}} or "
                "{file: PATH} so the file can be shared"
            )
        return inline
    if source is None:
        problems.append(f"{where}.{from_field}: required field is missing (or give {inline_field} inline)")
        return None
    if (source.env is None) == (source.file is None):
        problems.append(f"{where}.{from_field}: give exactly one of env or file")
        return None
    if source.env is not None:
        value = env.get(source.env, "")
        if not value:
            problems.append(f"{where}.{from_field}.env: environment variable {source.env} is not set (or empty)")
            return None
        return SecretStr(value.strip())
    file = base_dir / str(source.file)
    try:
        value = file.read_text().strip()
    except OSError as err:
        problems.append(f"{where}.{from_field}.file: cannot read {file}: {err.strerror}")
        return None
    if not value:
        problems.append(f"{where}.{from_field}.file: {file} is empty")
        return None
    return SecretStr(value)


def _check_url(url: SecretStr, kind: str, where: str, field_name: str, problems: list[str]) -> None:
    # The URL is a secret: a problem says what is wrong with it, never what it is.
    text = url.get_secret_value()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        problems.append(f"{where}.{field_name}: not a valid URL")
        return
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{where}.{field_name}: expected an http:// or https:// URL")
        return
    if any(c.isspace() for c in text):
        problems.append(f"{where}.{field_name}: the URL contains white space")
        return
    if kind == "dingtalk" and not dict(parse_qsl(parts.query)).get("access_token"):
        problems.append(
            f"{where}.{field_name}: a DingTalk robot URL carries its token: …/robot/send?access_token=TOKEN"
        )
