"""Label selectors, field selectors and `--sort-by`, with the semantics kubectl users already know.

Label selectors are parsed exactly as k8s.io/apimachinery/pkg/labels does (same grammar, same error texts),
field selectors as k8s.io/apimachinery/pkg/fields does, and `--sort-by` takes the JSONPath forms kubectl's
RelaxedJSONPathExpression accepts and orders like kubectl's sorter. Pure: objects in, decisions out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gamekeeper.api.keys import OWNER_GSS_KEY

if TYPE_CHECKING:
    from fractions import Fraction


class SelectorError(ValueError):
    """A selector or sort path that does not parse; the message is the one Kubernetes gives."""


# --- label selectors (k8s.io/apimachinery/pkg/labels/selector.go) ------------------------------------------------

IN: Final = "in"
NOT_IN: Final = "notin"
EQUALS: Final = "="
DOUBLE_EQUALS: Final = "=="
NOT_EQUALS: Final = "!="
GREATER_THAN: Final = "gt"
LESS_THAN: Final = "lt"
EXISTS: Final = "exists"
DOES_NOT_EXIST: Final = "!"

_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
_VALID_OPERATORS = (*_BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST)

# Tokens, named as in apimachinery's lexer.
_ERROR, _EOS, _CPAR, _COMMA, _NOT, _DEQ, _EQ, _GT, _IDENT, _IN, _LT, _NEQ, _NOTIN, _OPAR = range(14)
_STRING_TO_TOKEN = {
    ")": _CPAR, ",": _COMMA, "!": _NOT, "==": _DEQ, "=": _EQ, ">": _GT, "in": _IN, "<": _LT, "!=": _NEQ,
    "notin": _NOTIN, "(": _OPAR,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")

_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                  "alphanumeric character")
_LABEL_VALUE_FMT = f"({_LABEL_KEY_FMT})?"
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character")
_DNS_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN_FMT = _DNS_LABEL_FMT + "(\\." + _DNS_LABEL_FMT + ")*"
_DNS_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                      "'.', and must start and end with an alphanumeric character")
_LABEL_KEY_RE = re.compile(_LABEL_KEY_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_DNS_SUBDOMAIN_RE = re.compile(_DNS_SUBDOMAIN_FMT)
_INT64_RE = re.compile(r"[+-]?[0-9]+")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # apimachinery's RegexError, odd double spaces included: users grep for these texts.
    return msg + " (e.g. " + " or ".join(f"'{e}', " for e in examples) + f"regex used for validation is '{fmt}')"


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _invalid(path: str, value: str, detail: str) -> str:
    """field.Invalid(path, value, detail).Error()."""
    return f"{path}: Invalid value: {_quote(value)}: {detail}"


def _json_list(values: Sequence[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))


def _aggregate(errors: Sequence[str]) -> str:
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def label_key_errors(key: str) -> list[str]:
    """content.IsLabelKey: what is wrong with a label key (empty when it is valid)."""
    errs: list[str] = []
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix.encode()) > 253:
                errs.append("prefix part must be no more than 253 bytes")
            if not _DNS_SUBDOMAIN_RE.fullmatch(prefix):
                errs.append("prefix part " + _regex_error(_DNS_SUBDOMAIN_MSG, _DNS_SUBDOMAIN_FMT, "example.com"))
    else:
        return ["a valid label key " + _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name.encode()) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not _LABEL_KEY_RE.fullmatch(name):
        errs.append("name part " + _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return errs


def label_value_errors(value: str) -> list[str]:
    """validation.IsValidLabelValue: what is wrong with a label value (empty when it is valid)."""
    errs: list[str] = []
    if len(value.encode()) > 63:
        errs.append("must be no more than 63 bytes")
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _parse_int64(text: str) -> int | None:
    if not _INT64_RE.fullmatch(text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: key, operator, and its values (sorted, as the parser leaves them)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if self.key not in labels or len(self.values) != 1:
                return False
            have, want = _parse_int64(labels[self.key]), _parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        text = ("!" if self.operator == DOES_NOT_EXIST else "") + self.key
        if self.operator in (EXISTS, DOES_NOT_EXIST):
            return text
        symbol = {EQUALS: "=", DOUBLE_EQUALS: "==", NOT_EQUALS: "!=", IN: " in ", NOT_IN: " notin ",
                  GREATER_THAN: ">", LESS_THAN: "<"}[self.operator]
        values = ",".join(sorted(self.values))
        return f"{text}{symbol}({values})" if self.operator in (IN, NOT_IN) else f"{text}{symbol}{values}"


def new_requirement(key: str, operator: str, values: Iterable[str]) -> Requirement:
    """labels.NewRequirement: a validated requirement, or SelectorError with every problem found."""
    vals = tuple(values)
    errs: list[str] = []
    if key_errs := label_key_errors(key):
        errs.append(_invalid("key", key, "; ".join(key_errs)))
    if operator in (IN, NOT_IN):
        if not vals:
            errs.append("values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty")
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vals) != 1:
            errs.append(f"values: Invalid value: {_json_list(vals)}: exact-match compatibility requires one "
                        "single value")
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if vals:
            errs.append(f"values: Invalid value: {_json_list(vals)}: values set must be empty for exists and "
                        "does not exist")
    elif operator in (GREATER_THAN, LESS_THAN):
        if len(vals) != 1:
            errs.append(f"values: Invalid value: {_json_list(vals)}: for 'Gt', 'Lt' operators, exactly one "
                        "value is required")
        for i, v in enumerate(vals):
            if _parse_int64(v) is None:
                errs.append(_invalid(f"values[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer"))
    else:
        supported = ", ".join(_quote(o) for o in _VALID_OPERATORS)
        errs.append(f"operator: Unsupported value: {_quote(operator)}: supported values: {supported}")
    for i, v in enumerate(vals):
        if value_errs := label_value_errors(v):
            errs.append(_invalid(f"values[{i}][{key}]", v, "; ".join(value_errs)))
    if errs:
        raise SelectorError(_aggregate(errs))
    return Requirement(key, operator, vals)


@dataclass(frozen=True)
class LabelSelector:
    """The AND of its requirements, sorted by key; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


class _Lexer:
    def __init__(self, text: str) -> None:
        self.s = text
        self.pos = 0

    def read(self) -> str:
        if self.pos < len(self.s):
            ch = self.s[self.pos]
            self.pos += 1
            return ch
        # apimachinery's lexer reads 0 at the end, so a NUL in the text ends a token as the end does.
        return "\0"

    def unread(self) -> None:
        self.pos -= 1

    def lex(self) -> tuple[int, str]:
        ch = self.read()
        while ch in _WHITESPACE:
            ch = self.read()
        if ch == "\0":
            return _EOS, ""
        self.unread()
        if ch in _SPECIAL:
            return self._special()
        return self._identifier()

    def _identifier(self) -> tuple[int, str]:
        start = self.pos
        while True:
            ch = self.read()
            if ch == "\0":
                break
            if ch in _SPECIAL or ch in _WHITESPACE:
                self.unread()
                break
        text = self.s[start:self.pos].rstrip("\0")
        return _STRING_TO_TOKEN.get(text, _IDENT), text

    def _special(self) -> tuple[int, str]:
        buffer = ""
        last: tuple[int, str] | None = None
        while True:
            ch = self.read()
            if ch == "\0":
                break
            if ch not in _SPECIAL:
                self.unread()
                break
            buffer += ch
            token = _STRING_TO_TOKEN.get(buffer)
            if token is not None:
                last = (token, buffer)
            elif last is not None:
                self.unread()
                break
        if last is None:
            return _ERROR, f"error expected: keyword found '{buffer}'"
        return last


_KEY_AND_OPERATOR, _VALUES = 0, 1


class _Parser:
    def __init__(self, text: str) -> None:
        lexer = _Lexer(text)
        self.items: list[tuple[int, str]] = []
        while True:
            item = lexer.lex()
            self.items.append(item)
            if item[0] == _EOS:
                break
        self.position = 0

    @staticmethod
    def _in_context(item: tuple[int, str], context: int) -> tuple[int, str]:
        # `in` and `notin` are keywords only where an operator may stand: `notin=in` is a key and a value.
        if context == _VALUES and item[0] in (_IN, _NOTIN):
            return _IDENT, item[1]
        return item

    def lookahead(self, context: int) -> tuple[int, str]:
        return self._in_context(self.items[self.position], context)

    def consume(self, context: int) -> tuple[int, str]:
        self.position += 1
        return self._in_context(self.items[self.position - 1], context)

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.lookahead(_VALUES)
            if tok in (_IDENT, _NOT):
                try:
                    requirements.append(self.requirement())
                except SelectorError as e:
                    raise SelectorError(f"unable to parse requirement: {e}") from None
                t, literal = self.consume(_VALUES)
                if t == _EOS:
                    return requirements
                if t == _COMMA:
                    t2, l2 = self.lookahead(_VALUES)
                    if t2 not in (_IDENT, _NOT):
                        raise SelectorError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise SelectorError(f"found '{literal}', expected: ',' or 'end of string'")
            elif tok == _EOS:
                return requirements
            else:
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        key, operator = self.key_and_inferred_operator()
        if operator in (EXISTS, DOES_NOT_EXIST):
            return new_requirement(key, operator, ())
        operator = self.operator()
        values = self.values() if operator in (IN, NOT_IN) else self.exact_value()
        return new_requirement(key, operator, sorted(values))

    def key_and_inferred_operator(self) -> tuple[str, str]:
        operator = ""
        tok, literal = self.consume(_VALUES)
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, literal = self.consume(_VALUES)
        if tok != _IDENT:
            raise SelectorError(f"found '{literal}', expected: identifier")
        if errs := label_key_errors(literal):
            raise SelectorError(_invalid("<nil>", literal, "; ".join(errs)))
        if self.lookahead(_VALUES)[0] in (_EOS, _COMMA) and operator != DOES_NOT_EXIST:
            operator = EXISTS
        return literal, operator

    def operator(self) -> str:
        tok, lit = self.consume(_KEY_AND_OPERATOR)
        op = {_IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN, _NOTIN: NOT_IN,
              _NEQ: NOT_EQUALS}.get(tok)
        if op is None:
            raise SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        return op

    def values(self) -> set[str]:
        tok, lit = self.consume(_VALUES)
        if tok != _OPAR:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead(_VALUES)
        if tok in (_IDENT, _COMMA):
            values = self.identifiers()
            if self.consume(_VALUES)[0] != _CPAR:
                raise SelectorError(f"found '{lit}', expected: ')'")
            return values
        if tok == _CPAR:
            self.consume(_VALUES)
            return {""}
        raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume(_VALUES)
            if tok == _IDENT:
                values.add(lit)
                tok2, lit2 = self.lookahead(_VALUES)
                if tok2 == _COMMA:
                    continue
                if tok2 == _CPAR:
                    return values
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                # "(,", ",)" and ",," each stand for the empty value.
                if not values:
                    values.add("")
                if self.lookahead(_VALUES)[0] in (_CPAR, _COMMA):
                    values.add("")
                if self.lookahead(_VALUES)[0] == _CPAR:
                    return values
                continue
            raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        if self.lookahead(_VALUES)[0] in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume(_VALUES)
        if tok == _IDENT:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str) -> LabelSelector:
    """labels.Parse: `a=b,c!=d,e in (f,g),h notin (i),j,!k,l>1`. Raises SelectorError with apimachinery's text."""
    requirements = _Parser(text).parse()
    requirements.sort(key=lambda r: r.key)
    return LabelSelector(tuple(requirements))


# --- field selectors (k8s.io/apimachinery/pkg/fields/selector.go) ------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    negated: bool
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        return (fields.get(self.field, "") == self.value) != self.negated

    def __str__(self) -> str:
        return f"{self.field}{'!=' if self.negated else '='}{escape_field_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    """The AND of `field=value` / `field!=value` terms; the empty selector matches everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.field for r in self.requirements))

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    in_slash = False
    for c in value:
        if in_slash:
            if c not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":
            # Go prints the rune with %v, i.e. as its code point.
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    if not text:
        return []
    terms: list[str] = []
    start, in_slash = 0, False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def parse_field_selector(text: str) -> FieldSelector:
    """fields.ParseSelector: `a=b,c==d,e!=f` with `\\,` `\\=` `\\\\` escapes in values."""
    requirements: list[FieldRequirement] = []
    for part in sorted(_split_terms(text)):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = split
        requirements.append(FieldRequirement(lhs, op == "!=", unescape_field_value(rhs)))
    return FieldSelector(tuple(requirements))


def _text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _owner_gss(obj: Mapping[str, Any]) -> str:
    return _text(((obj.get("metadata") or {}).get("labels") or {}).get(OWNER_GSS_KEY))


_Getter = Callable[[Mapping[str, Any]], str]


def _path(*keys: str, default: str = "") -> _Getter:
    def get(obj: Mapping[str, Any]) -> str:
        value: Any = obj
        for key in keys:
            if not isinstance(value, Mapping):
                return default
            value = value.get(key)
        return _text(value, default)
    return get


_META: dict[str, _Getter] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace", default="default"),
}

# What `--field-selector` can filter on, per kind. Kubernetes itself serves only metadata.name/namespace for a
# custom resource (and a fixed list for pods); the GameServer fields are the ones operators filter fleets by.
# `gss` is the owning GameServerSet (the game.kruise.io/owner-gss label), the one field that is not a path.
SELECTABLE_FIELDS: Final[Mapping[str, Mapping[str, _Getter]]] = {
    "GameServer": {
        **_META,
        "spec.opsState": _path("spec", "opsState", default="None"),
        "spec.deletionPriority": _path("spec", "deletionPriority"),
        "spec.updatePriority": _path("spec", "updatePriority"),
        "spec.networkDisabled": _path("spec", "networkDisabled", default="false"),
        "status.currentState": _path("status", "currentState"),
        "status.deletionPriority": _path("status", "deletionPriority"),
        "status.updatePriority": _path("status", "updatePriority"),
        "status.networkStatus.currentNetworkState": _path("status", "networkStatus", "currentNetworkState"),
        "gss": _owner_gss,
    },
    "GameServerSet": {**_META},
    "Pod": {
        **_META,
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy", default="Always"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "gss": _owner_gss,
    },
}


def check_field_selector(selector: FieldSelector, kind: str) -> None:
    """The apiserver's refusal of a field it cannot select on, naming the ones it can."""
    supported = SELECTABLE_FIELDS.get(kind, _META)
    for name in selector.fields:
        if name not in supported:
            raise SelectorError(f"field label not supported: {name} (supported for {kind}: {', '.join(supported)})")


def field_values(obj: Mapping[str, Any], kind: str, names: Iterable[str]) -> dict[str, str]:
    supported = SELECTABLE_FIELDS.get(kind, _META)
    return {name: supported[name](obj) for name in names if name in supported}


@dataclass(frozen=True)
class Selection:
    """A label selector and a field selector for one kind, checked; `matches` takes the object itself."""

    kind: str
    labels: LabelSelector = LabelSelector()
    fields: FieldSelector = FieldSelector()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if not self.labels.matches(meta.get("labels")):
            return False
        return self.fields.empty or self.fields.matches(field_values(obj, self.kind, self.fields.fields))

    @property
    def empty(self) -> bool:
        return self.labels.empty and self.fields.empty


def parse_selection(kind: str, label_selector: str | None = None, field_selector: str | None = None) -> Selection:
    labels = parse_label_selector(label_selector or "")
    fields = parse_field_selector(field_selector or "")
    check_field_selector(fields, kind)
    return Selection(kind, labels, fields)


# --- --sort-by (k8s.io/kubectl/pkg/cmd/get/sorter.go, customcolumn.go) ------------------------------------------

_RELAXED_RE = re.compile(r"^\{\.?([^{}]+)\}$|^\.?([^{}]+)$")
_SEGMENT_RE = re.compile(r"""\[(?:(-?\d+)|'([^']*)'|"([^"]*)")\]|((?:\\.|[^.\[\\])+)""")


def relaxed_jsonpath(expression: str) -> str:
    """kubectl's RelaxedJSONPathExpression: `a.b`, `.a.b`, `{a.b}` and `{.a.b}` all become `{.a.b}`."""
    if not expression:
        return expression
    m = _RELAXED_RE.match(expression)
    if m is None or "\n" in expression:
        raise SelectorError("unexpected path string, expected a 'name1.name2' or '.name1.name2' or '{name1.name2}' "
                            "or '{.name1.name2}'")
    return "{." + (m.group(1) or m.group(2)) + "}"


@dataclass(frozen=True)
class SortPath:
    """A JSONPath of field names and list indexes; `[*]`, filters and unions are not sortable keys here."""

    expression: str
    segments: tuple[str | int, ...]

    def find(self, obj: Any) -> tuple[bool, Any]:
        value = obj
        for seg in self.segments:
            if isinstance(seg, int):
                if not isinstance(value, list) or not -len(value) <= seg < len(value):
                    return False, None
                value = value[seg]
            else:
                if not isinstance(value, Mapping) or seg not in value:
                    return False, None
                value = value[seg]
        return True, value


def parse_sort_path(expression: str) -> SortPath:
    relaxed = relaxed_jsonpath(expression)
    body = relaxed[2:-1]
    segments: list[str | int] = []
    pos = 0
    while pos < len(body):
        if body[pos] == "." and segments:
            pos += 1
        m = _SEGMENT_RE.match(body, pos)
        if m is None or m.end() == pos:
            raise SelectorError(f"--sort-by {expression!r}: only field names, [N] and ['key'] are supported "
                                "(e.g. {.metadata.name} or .spec.deletionPriority)")
        index, single, double, name = m.groups()
        if index is not None:
            segments.append(int(index))
        elif single is not None or double is not None:
            segments.append(single if single is not None else double or "")
        else:
            if name == "*" or any(c in name for c in "*?@()"):
                raise SelectorError(f"--sort-by {expression!r}: wildcards and filters do not give one sort key")
            segments.append(re.sub(r"\\(.)", r"\1", name))
        pos = m.end()
    return SortPath(relaxed, tuple(segments))


_QUANTITY_RE = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?")
_BINARY_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIX = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def _quantity(text: str) -> Fraction | None:
    """resource.ParseQuantity, as far as ordering needs: "9" < "10" < "1Ki" when every value is a quantity."""
    m = _QUANTITY_RE.fullmatch(text)
    if m is None:
        return None
    from fractions import Fraction  # here: only --sort-by on quantities needs it (it costs `gk` start-up)

    number, suffix = Fraction(m.group(1)), m.group(2) or ""
    if suffix in _BINARY_SUFFIX:
        return number * _BINARY_SUFFIX[suffix]
    if suffix in _DECIMAL_SUFFIX:
        return number * Fraction(10) ** _DECIMAL_SUFFIX[suffix]
    if suffix:
        return number * Fraction(10) ** int(suffix[1:])
    return number


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return type(value).__name__


def _less(a: Any, b: Any, expression: str) -> bool:
    """kubectl's isLess on decoded JSON: numbers by value, strings as text or as quantities, null first."""
    if a is None or b is None:
        return a is None and b is not None
    for value in (a, b):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise SelectorError(f"field {expression} is an unsortable type: {_type_name(value)}")
    if isinstance(a, str) and isinstance(b, str):
        qa, qb = _quantity(a), _quantity(b)
        if qa is not None and qb is not None:
            return qa < qb
        return a < b
    if isinstance(a, str) or isinstance(b, str):
        raise SelectorError(f"field {expression} mixes strings and numbers, which cannot be sorted together")
    return bool(a < b)


def sort_objects(objects: Sequence[Mapping[str, Any]], expression: str) -> list[Mapping[str, Any]]:
    """kubectl get --sort-by: objects without the field first, the rest ascending; ties keep their order."""
    items = list(objects)
    if not items or not expression:
        return items
    path = parse_sort_path(expression)
    found = [path.find(obj) for obj in items]
    if not any(ok for ok, _ in found):
        raise SelectorError(f"couldn't find any field with path {_quote(path.expression)} in the list of objects")
    missing = [obj for obj, (ok, _) in zip(items, found, strict=True) if not ok]
    present = [(value, obj) for obj, (ok, value) in zip(items, found, strict=True) if ok]
    # Insertion into a sorted list keeps equal keys in arrival order with a comparison that may raise.
    ordered: list[tuple[Any, Mapping[str, Any]]] = []
    for value, obj in present:
        lo, hi = 0, len(ordered)
        while lo < hi:
            mid = (lo + hi) // 2
            if _less(value, ordered[mid][0], path.expression):
                hi = mid
            else:
                lo = mid + 1
        ordered.insert(lo, (value, obj))
    return missing + [obj for _, obj in ordered]
