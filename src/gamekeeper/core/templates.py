"""A safe, pure-Python subset of Go's ``text/template`` for service-quality values.

Upstream OpenKruiseGame renders service-quality action values (``opsState``, label and annotation values,
``updatePriority``/``deletionPriority``) with Go's ``text/template`` and the context ``{Result: <probe output>}``
(``pkg/util/template.go``). This module re-implements the part of that language such templates use, and
follows Go's lexer, parser and executor closely, so that a template that works with upstream gives the same
output here and a template that fails upstream fails here too.

Supported
    * Text, actions ``{{ ... }}`` and trim markers ``{{- `` / `` -}}`` (which remove the adjacent space,
      tab, carriage return and newline characters, as in Go).
    * Comments ``{{/* ... */}}`` (with optional trim markers).
    * Operands: ``.Result``, ``.`` (the context; it prints as ``{<result>}``, like Go's ``%v`` of the struct),
      ``$`` and variables (``{{$x := pipeline}}``, ``{{$x = pipeline}}``, ``$x``, ``$.Result``), string
      literals (``"..."`` with Go escapes, and raw ```...```), integer, float and character literals with
      Go's syntax (``42``, ``-3``, ``0x1F``, ``1_000``, ``1.5``, ``1e3``, ``'a'``), ``true``/``false``,
      ``nil`` (as an argument of ``eq``/``ne``/``print``...), function calls, parenthesised pipelines and
      ``|`` chaining (the piped value becomes the last argument).
    * ``{{if}}``/``{{else if}}``/``{{else}}``/``{{end}}`` and ``{{with}}``/``{{else with}}``/``{{else}}``
      (``with`` rebinds dot). Truthiness is Go's: ``false``, ``0``, ``0.0``, ``""`` and ``nil`` are false.
    * Functions, with upstream's overrides: ``eq``/``ne`` (exactly two arguments, Go interface equality, so
      ``eq "1" 1`` is simply false), ``lt``/``le``/``gt``/``ge`` (two *string* arguments, compared as numbers
      when both parse with Go's ``strconv.ParseFloat``, else byte-wise/lexicographically), and the Go built-ins
      ``and``, ``or`` (short-circuit, returning the deciding value), ``not``, ``len`` (UTF-8 byte length of a
      string), ``print``, ``println``, ``printf``, ``html``, ``js``, ``urlquery`` and ``call`` (which, as no
      function values exist here, always fails).
    * ``printf`` verbs ``%v %s %q %d %t %e %E %f %F %g %G %T %%``, and ``%x``/``%X`` of integers, with the
      flags ``-``, ``+``, space and ``0`` (the last only for numbers), width and precision (at most
      :data:`MAX_OUTPUT_CHARS`); Go's in-band error texts (``%!d(string=x)``, ``%!v(MISSING)``,
      ``%!(EXTRA ...)``, ``%!(NOVERB)``) are reproduced.
    * ``{{else with}}`` is a Go 1.23 addition; it is accepted here.

Deliberately not supported (each is an error, so :func:`render_template` returns the template unchanged)
    ``range``, ``break``, ``continue``, ``define``, ``template``, ``block``, the functions ``index`` and
    ``slice``, complex-number literals, string literals whose escapes produce invalid UTF-8, ``printf``
    argument indexes (``%[1]d``), ``*`` widths, the ``#`` flag, Go verbs other than the above (``%b %c %o %U``,
    ``%x`` of strings and floats), the ``0`` flag on non-numbers, and ``%q`` with ``+``. Verbs that Go itself
    does not know still give Go's ``%!z(int=5)`` text.

Safety
    Templates cannot run code, read files or reach Python attributes: the only data is the context's
    ``Result`` string and literals, and the only callables are the fixed functions above. There are no loops,
    so execution is linear in the template size. Limits: template length :data:`MAX_TEMPLATE_CHARS`, output
    (and any intermediate string) :data:`MAX_OUTPUT_CHARS`, nesting of ``if``/``with``/parentheses
    :data:`MAX_NESTING`. ``eval``/``exec`` are never used.

Errors
    :class:`TemplateError` messages look like Go's, with a 1-based line and a 1-based column counted in
    characters: ``template: 1:13: function "foo" not defined``, or for execution errors
    ``template: 1:3: executing at <.InvalidField>: can't evaluate field InvalidField in type
    util.TemplateContext``.

Number parsing for ``lt``/``le``/``gt``/``ge`` follows Go's ``strconv.ParseFloat(s, 64)`` exactly rather than
Python's ``float()``: no surrounding spaces and no non-ASCII digits; decimal or ``0x`` hexadecimal mantissas
(hexadecimal needs a ``p`` exponent); ``_`` digit separators only between digits; ``inf``/``infinity``
(optionally signed) and unsigned ``nan``, case-insensitively; a value that overflows float64 is an error (so
such strings compare lexicographically, as upstream).
"""

from __future__ import annotations

import enum
import math
import unicodedata
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, NoReturn, TypeAlias
from urllib.parse import quote_plus

__all__ = [
    "MAX_NESTING",
    "MAX_OUTPUT_CHARS",
    "MAX_TEMPLATE_CHARS",
    "TemplateError",
    "parse_int_from_template",
    "render_template",
    "render_template_strict",
]

MAX_TEMPLATE_CHARS: Final = 64 * 1024
"""Longest template (in characters) that is parsed; a longer one that contains ``{{`` is an error."""

MAX_OUTPUT_CHARS: Final = 64 * 1024
"""Longest output, and longest string any function may build, in characters."""

MAX_NESTING: Final = 50
"""Deepest nesting of ``if``/``with`` blocks and parenthesised pipelines."""

_CONTEXT_TYPE: Final = "util.TemplateContext"  # Go's name for upstream's context struct.


class TemplateError(Exception):
    """A parse or execution error. The message says what went wrong and where (``template: LINE:COL: ...``)."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------


def render_template(template: str, result: str) -> str:
    """Upstream ``RenderTemplate``: render ``template`` with the context ``{Result: result}``.

    A template without ``{{`` is returned unchanged. Any parse or execution error also returns the original
    template string unchanged (use :func:`render_template_strict` to learn why).
    """
    if "{{" not in template:
        return template
    try:
        return render_template_strict(template, result)
    except TemplateError:
        return template


def render_template_strict(template: str, result: str) -> str:
    """Like :func:`render_template`, but raise :class:`TemplateError` instead of falling back."""
    if "{{" not in template:
        return template
    if len(template) > MAX_TEMPLATE_CHARS:
        raise TemplateError(
            f"template: 1:1: template is too long ({len(template)} characters; the limit is {MAX_TEMPLATE_CHARS})",
            line=1,
            column=1,
        )
    try:
        nodes = _Parser(template).parse()
        return _State(template, _Context(result)).run(nodes)
    except TemplateError:
        raise
    except RecursionError as exc:  # pragma: no cover - MAX_NESTING keeps the stack shallow
        raise TemplateError("template: 1:1: template is nested too deeply", line=1, column=1) from exc
    except (ValueError, ArithmeticError) as exc:  # pragma: no cover - safety net; see the fuzz test
        raise TemplateError(f"template: 1:1: internal error: {exc}", line=1, column=1) from exc


def parse_int_from_template(template: str, result: str) -> int:
    """Upstream ``ParseIntOrStringFromTemplate``: render (falling back like :func:`render_template`) and parse
    the whole rendering as a base-10 integer the way Go's ``strconv.Atoi`` does (optional ``+``/``-`` sign,
    ASCII digits only, no spaces or ``_``, within the 64-bit range).

    Raises ``ValueError`` when the rendering is empty or not such an integer (messages as upstream). Note that
    upstream then stores the value with ``intstr.FromInt``, which wraps values outside the int32 range; this
    function returns the exact integer and leaves range checks to the caller.
    """
    rendered = render_template(template, result)
    if rendered == "":
        raise ValueError(f"rendered value is empty (template: {template}, result: {result})")
    value = _go_atoi(rendered)
    if value is None:
        raise ValueError(
            f"priority value must be numeric, got: {rendered} (template: {template}, probe result: {result})"
        )
    return value


# ---------------------------------------------------------------------------------------------------------------
# Go number and string syntax helpers
# ---------------------------------------------------------------------------------------------------------------

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1


def _go_atoi(s: str) -> int | None:
    """Go ``strconv.Atoi`` on a 64-bit platform; ``None`` on any error."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or not all("0" <= c <= "9" for c in body):
        return None
    digits = body.lstrip("0") or "0"
    if len(digits) > 19:
        return None
    value = int(digits)
    if s[0] == "-":
        value = -value
    if value < _INT64_MIN or value > _INT64_MAX:
        return None
    return value


def _underscore_ok(s: str) -> bool:
    """Go ``strconv.underscoreOK``: ``_`` only between digits, or between a base prefix and a digit."""
    if s[:1] in ("+", "-"):
        s = s[1:]
    saw = "^"
    i = 0
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in ("b", "o", "x"):
        i = 2
        saw = "0"
        hexa = s[1].lower() == "x"
    while i < len(s):
        c = s[i]
        if "0" <= c <= "9" or (hexa and "a" <= c.lower() <= "f"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
        i += 1
    return saw != "_"


def _go_parse_float(s: str) -> float | None:
    """Go ``strconv.ParseFloat(s, 64)``; ``None`` on a syntax error or on overflow (Go's ``ErrRange``)."""
    if not s or not s.isascii():
        return None
    low = s.lower()
    unsigned = low[1:] if low[0] in "+-" else low
    if unsigned in ("inf", "infinity"):
        return -math.inf if low[0] == "-" else math.inf
    if low == "nan":
        return math.nan
    n = len(s)
    i = 0
    if s[0] in "+-":
        i = 1
    hexa = False
    if i + 2 < n and s[i] == "0" and s[i + 1] in "xX":
        hexa = True
        i += 2
    sawdot = sawdigits = underscores = False
    while i < n:
        c = s[i]
        if c == "_":
            underscores = True
        elif c == ".":
            if sawdot:
                break
            sawdot = True
        elif "0" <= c <= "9" or (hexa and c in "abcdefABCDEF"):
            sawdigits = True
        else:
            break
        i += 1
    if not sawdigits:
        return None
    if i < n and s[i].lower() == ("p" if hexa else "e"):
        i += 1
        if i < n and s[i] in "+-":
            i += 1
        if i >= n or not "0" <= s[i] <= "9":
            return None
        while i < n and ("0" <= s[i] <= "9" or s[i] == "_"):
            if s[i] == "_":
                underscores = True
            i += 1
    elif hexa:
        return None  # A hexadecimal mantissa must have a 'p' exponent.
    if i != n:
        return None
    if underscores and not _underscore_ok(s):
        return None
    clean = s.replace("_", "")
    try:
        value = float.fromhex(clean) if hexa else float(clean)
    except (ValueError, OverflowError):
        return None
    if math.isinf(value):
        return None  # Overflow: Go returns ErrRange.
    return value


def _go_parse_uint0(s: str) -> int | None:
    """Go ``strconv.ParseUint(s, 0, 64)`` (base from the prefix, ``_`` separators allowed)."""
    if not s or not s.isascii():
        return None
    s0 = s
    base = 10
    if s[0] == "0":
        prefix = s[1].lower() if len(s) >= 3 else ""
        if prefix == "b":
            base, s = 2, s[2:]
        elif prefix == "o":
            base, s = 8, s[2:]
        elif prefix == "x":
            base, s = 16, s[2:]
        else:
            base, s = 8, s[1:]
    underscores = False
    digits: list[str] = []
    for c in s:
        if c == "_":
            underscores = True
            continue
        lc = c.lower()
        if "0" <= lc <= "9":
            d = ord(lc) - ord("0")
        elif "a" <= lc <= "z":
            d = ord(lc) - ord("a") + 10
        else:
            return None
        if d >= base:
            return None
        digits.append(c)
    if underscores and not _underscore_ok(s0):
        return None
    significant = "".join(digits).lstrip("0")
    if not significant:
        return 0
    if len(significant) > 64:
        return None
    value = int(significant, base)
    if value >= 1 << 64:
        return None
    return value


def _go_parse_int0(s: str) -> int | None:
    """Go ``strconv.ParseInt(s, 0, 64)``."""
    if not s:
        return None
    neg = s[0] == "-"
    body = s[1:] if s[0] in "+-" else s
    u = _go_parse_uint0(body)
    if u is None:
        return None
    if (not neg and u > _INT64_MAX) or (neg and u > -_INT64_MIN):
        return None
    return -u if neg else u


_SIMPLE_ESCAPES: Final = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def _unquote_char(s: str, i: int, quote: str) -> tuple[int, bool, int] | None:
    """Go ``strconv.UnquoteChar`` on ``s[i:]``: (value, is_byte, next index), or ``None`` on a syntax error.

    ``is_byte`` is true for ``\\x`` and octal escapes, whose value is one byte rather than a code point.
    """
    if i >= len(s):
        return None
    c = s[i]
    if c == quote:
        return None
    if c != "\\":
        return ord(c), False, i + 1
    if i + 1 >= len(s):
        return None
    e = s[i + 1]
    i += 2
    if e in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[e], False, i
    if e in ("x", "u", "U"):
        width = {"x": 2, "u": 4, "U": 8}[e]
        digits = s[i : i + width]
        if len(digits) < width or not all(d in _HEX_DIGITS for d in digits):
            return None
        value = int(digits, 16)
        if e == "x":
            return value, True, i + width
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            return None
        return value, False, i + width
    if "0" <= e <= "7":
        digits = e + s[i : i + 2]
        if len(digits) < 3 or not all("0" <= d <= "7" for d in digits):
            return None
        value = int(digits, 8)
        if value > 255:
            return None
        return value, True, i + 2
    if e in ("'", '"'):
        if e != quote:
            return None
        return ord(e), False, i
    return None


def _unquote_string(token: str) -> str | None:
    """Go ``strconv.Unquote`` for a double-quoted or raw string token; ``None`` on a syntax error."""
    if token[0] == "`":
        return token[1:-1].replace("\r", "")
    body = token[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        got = _unquote_char(body, i, '"')
        if got is None:
            return None
        value, is_byte, i = got
        if is_byte:
            out.append(value)
        else:
            out += chr(value).encode("utf-8", "surrogatepass")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_print(c: str) -> bool:
    """Go ``unicode.IsPrint``: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    return c == " " or unicodedata.category(c)[0] in "LMNPS"


def _go_quote(s: str, quote: str = '"') -> str:
    """Go ``strconv.Quote`` (or ``QuoteRune``'s escaping with ``quote="'"``)."""
    out = [quote]
    for c in s:
        o = ord(c)
        if c == quote or c == "\\":
            out.append("\\" + c)
        elif _is_print(c):
            out.append(c)
        elif c == "\a":
            out.append("\\a")
        elif c == "\b":
            out.append("\\b")
        elif c == "\f":
            out.append("\\f")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == "\v":
            out.append("\\v")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\\ufffd")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append(quote)
    return "".join(out)


def _fmt_u(c: str) -> str:
    """Go's ``%#U`` of a rune: ``U+007D '}'``."""
    if _is_print(c):
        return f"U+{ord(c):04X} '{c}'"
    return f"U+{ord(c):04X}"


# ---------------------------------------------------------------------------------------------------------------
# Lexer (mirrors text/template/parse/lex.go)
# ---------------------------------------------------------------------------------------------------------------


class _K(enum.Enum):
    TEXT = enum.auto()
    LEFT_DELIM = enum.auto()
    RIGHT_DELIM = enum.auto()
    SPACE = enum.auto()
    ASSIGN = enum.auto()
    DECLARE = enum.auto()
    PIPE = enum.auto()
    STRING = enum.auto()
    RAW_STRING = enum.auto()
    CHAR_CONST = enum.auto()
    NUMBER = enum.auto()
    FIELD = enum.auto()
    VARIABLE = enum.auto()
    IDENT = enum.auto()
    BOOL = enum.auto()
    CHAR = enum.auto()
    LPAREN = enum.auto()
    RPAREN = enum.auto()
    EOF = enum.auto()
    # Keywords.
    DOT = enum.auto()
    NIL = enum.auto()
    IF = enum.auto()
    ELSE = enum.auto()
    END = enum.auto()
    WITH = enum.auto()
    RANGE = enum.auto()
    DEFINE = enum.auto()
    TEMPLATE = enum.auto()
    BLOCK = enum.auto()
    BREAK = enum.auto()
    CONTINUE = enum.auto()


_KEYWORDS: Final = {
    "block": _K.BLOCK,
    "break": _K.BREAK,
    "continue": _K.CONTINUE,
    "define": _K.DEFINE,
    "else": _K.ELSE,
    "end": _K.END,
    "if": _K.IF,
    "nil": _K.NIL,
    "range": _K.RANGE,
    "template": _K.TEMPLATE,
    "with": _K.WITH,
}
_KEYWORD_KINDS: Final = frozenset(_KEYWORDS.values()) | {_K.DOT}
_SPACE: Final = " \t\r\n"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _K
    val: str
    pos: int

    def __str__(self) -> str:
        if self.kind is _K.EOF:
            return "EOF"
        if self.kind in _KEYWORD_KINDS:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return _go_quote(self.val[:10]) + "..."
        return _go_quote(self.val)


def _location(src: str, pos: int) -> tuple[int, int]:
    pos = max(0, min(pos, len(src)))
    line = src.count("\n", 0, pos) + 1
    return line, pos - src.rfind("\n", 0, pos)


def _error_at(src: str, pos: int, msg: str) -> TemplateError:
    line, col = _location(src, pos)
    return TemplateError(f"template: {line}:{col}: {msg}", line=line, column=col)


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or c.isdecimal()


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.n = len(src)

    def _fail(self, pos: int, msg: str) -> NoReturn:
        raise _error_at(self.src, pos, msg)

    def _at_right_delim(self, pos: int) -> tuple[bool, bool]:
        src = self.src
        if pos + 1 < self.n and src[pos] in _SPACE and src[pos + 1] == "-" and src.startswith("}}", pos + 2):
            return True, True
        if src.startswith("}}", pos):
            return True, False
        return False, False

    def _at_terminator(self, pos: int) -> bool:
        if pos >= self.n:
            return True
        c = self.src[pos]
        return c in _SPACE or c in ".,|:)(" or self.src.startswith("}}", pos)

    def _skip_space(self, pos: int) -> int:
        while pos < self.n and self.src[pos] in _SPACE:
            pos += 1
        return pos

    def tokens(self) -> Iterator[_Token]:
        src, n = self.src, self.n
        pos = 0
        while True:
            x = src.find("{{", pos)
            if x < 0:
                if pos < n:
                    yield _Token(_K.TEXT, src[pos:], pos)
                yield _Token(_K.EOF, "", n)
                return
            after = x + 2
            trim = after + 1 < n and src[after] == "-" and src[after + 1] in _SPACE
            end = pos + len(src[pos:x].rstrip(_SPACE)) if trim else x
            if end > pos:
                yield _Token(_K.TEXT, src[pos:end], pos)
            p = after + 2 if trim else after
            if src.startswith("/*", p):
                close = src.find("*/", p + 2)
                if close < 0:
                    self._fail(x, "unclosed comment")
                q = close + 2
                delim, rtrim = self._at_right_delim(q)
                if not delim:
                    self._fail(x, "comment ends before closing delimiter")
                q += 4 if rtrim else 2
                pos = self._skip_space(q) if rtrim else q
                continue
            yield _Token(_K.LEFT_DELIM, "{{", x)
            pos = yield from self._inside_action(p, x)

    def _inside_action(self, pos: int, action_start: int) -> Generator[_Token, None, int]:
        src, n = self.src, self.n
        paren_depth = 0
        while True:
            delim, rtrim = self._at_right_delim(pos)
            if delim:
                if paren_depth == 0:
                    if rtrim:
                        pos += 2
                    yield _Token(_K.RIGHT_DELIM, "}}", pos)
                    pos += 2
                    return self._skip_space(pos) if rtrim else pos
                self._fail(pos, "unclosed left paren")
            if pos >= n:
                self._fail(action_start, "unclosed action")
            start = pos
            c = src[pos]
            if c in _SPACE:
                pos = self._skip_space(pos)
                if src.startswith("-}}", pos):  # " -}}": leave the last space to the delimiter.
                    pos -= 1
                    if pos == start:
                        continue
                yield _Token(_K.SPACE, src[start:pos], start)
            elif c == "=":
                pos += 1
                yield _Token(_K.ASSIGN, "=", start)
            elif c == ":":
                if not src.startswith(":=", pos):
                    self._fail(start, "expected :=")
                pos += 2
                yield _Token(_K.DECLARE, ":=", start)
            elif c == "|":
                pos += 1
                yield _Token(_K.PIPE, "|", start)
            elif c == '"' or c == "'":
                pos = self._scan_quoted(pos, c)
                yield _Token(_K.STRING if c == '"' else _K.CHAR_CONST, src[start:pos], start)
            elif c == "`":
                close = src.find("`", pos + 1)
                if close < 0:
                    self._fail(start, "unterminated raw quoted string")
                pos = close + 1
                yield _Token(_K.RAW_STRING, src[start:pos], start)
            elif c == "$":
                pos = self._scan_field_or_variable(pos + 1)
                yield _Token(_K.VARIABLE, src[start:pos], start)
            elif c == "." and pos + 1 < n and not "0" <= src[pos + 1] <= "9":
                pos = self._scan_field_or_variable(pos + 1)
                kind = _K.DOT if pos == start + 1 else _K.FIELD
                yield _Token(kind, src[start:pos], start)
            elif c in ".+-" or "0" <= c <= "9":
                pos = self._scan_number_token(pos)
                yield _Token(_K.NUMBER, src[start:pos], start)
            elif _is_alnum(c):
                while pos < n and _is_alnum(src[pos]):
                    pos += 1
                if not self._at_terminator(pos):
                    self._fail(pos, f"bad character {_fmt_u(src[pos])}")
                word = src[start:pos]
                if word in _KEYWORDS:
                    yield _Token(_KEYWORDS[word], word, start)
                elif word in ("true", "false"):
                    yield _Token(_K.BOOL, word, start)
                else:
                    yield _Token(_K.IDENT, word, start)
            elif c == "(":
                paren_depth += 1
                pos += 1
                yield _Token(_K.LPAREN, "(", start)
            elif c == ")":
                paren_depth -= 1
                if paren_depth < 0:
                    self._fail(start, "unexpected right paren")
                pos += 1
                yield _Token(_K.RPAREN, ")", start)
            elif c.isascii() and c.isprintable():
                pos += 1
                yield _Token(_K.CHAR, c, start)
            else:
                self._fail(start, f"unrecognized character in action: {_fmt_u(c)}")

    def _scan_quoted(self, pos: int, quote: str) -> int:
        src, n = self.src, self.n
        start = pos
        what = "quoted string" if quote == '"' else "character constant"
        pos += 1
        while True:
            if pos >= n or src[pos] == "\n":
                self._fail(start, f"unterminated {what}")
            c = src[pos]
            pos += 1
            if c == "\\":
                if pos >= n or src[pos] == "\n":
                    self._fail(start, f"unterminated {what}")
                pos += 1
            elif c == quote:
                return pos

    def _scan_field_or_variable(self, pos: int) -> int:
        """Scan the name after ``.`` or ``$``; return the end (``pos`` itself for a bare ``.`` or ``$``)."""
        if self._at_terminator(pos):
            return pos
        while pos < self.n and _is_alnum(self.src[pos]):
            pos += 1
        if not self._at_terminator(pos):
            self._fail(pos, f"bad character {_fmt_u(self.src[pos])}")
        return pos

    def _scan_number(self, pos: int) -> tuple[bool, int]:
        src, n = self.src, self.n

        def run(p: int, chars: str) -> int:
            while p < n and src[p] in chars:
                p += 1
            return p

        if pos < n and src[pos] in "+-":
            pos += 1
        digits = "0123456789_"
        if pos < n and src[pos] == "0":
            pos += 1
            if pos < n and src[pos] in "xX":
                pos += 1
                digits = "0123456789abcdefABCDEF_"
            elif pos < n and src[pos] in "oO":
                pos += 1
                digits = "01234567_"
            elif pos < n and src[pos] in "bB":
                pos += 1
                digits = "01_"
        pos = run(pos, digits)
        if pos < n and src[pos] == ".":
            pos = run(pos + 1, digits)
        if len(digits) == 11 and pos < n and src[pos] in "eE":
            pos += 1
            if pos < n and src[pos] in "+-":
                pos += 1
            pos = run(pos, "0123456789_")
        if len(digits) == 23 and pos < n and src[pos] in "pP":
            pos += 1
            if pos < n and src[pos] in "+-":
                pos += 1
            pos = run(pos, "0123456789_")
        if pos < n and src[pos] == "i":
            pos += 1
        if pos < n and _is_alnum(src[pos]):
            return False, pos + 1
        return True, pos

    def _scan_number_token(self, start: int) -> int:
        ok, pos = self._scan_number(start)
        if not ok:
            self._fail(start, f"bad number syntax: {_go_quote(self.src[start:pos])}")
        if pos < self.n and self.src[pos] in "+-":
            ok, end = self._scan_number(pos)
            if not ok or self.src[end - 1] != "i":
                self._fail(start, f"bad number syntax: {_go_quote(self.src[start:end])}")
            self._fail(start, "complex numbers are not supported")
        return pos


# ---------------------------------------------------------------------------------------------------------------
# Parse tree
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    """The data: upstream's ``TemplateContext{Result string}``."""

    result: str


class _Missing:
    """No value (Go's ``missingVal``): marks an absent piped argument."""

    __slots__ = ()


_MISSING: Final = _Missing()
_Value: TypeAlias = str | bool | int | float | _Context | None


@dataclass(frozen=True, slots=True)
class _Text:
    pos: int
    text: str


@dataclass(frozen=True, slots=True)
class _FieldNode:
    pos: int
    idents: tuple[str, ...]

    def __str__(self) -> str:
        return "." + ".".join(self.idents)


@dataclass(frozen=True, slots=True)
class _VariableNode:
    pos: int
    idents: tuple[str, ...]  # idents[0] is the variable name, with its '$'.

    def __str__(self) -> str:
        return ".".join(self.idents)


@dataclass(frozen=True, slots=True)
class _IdentifierNode:
    pos: int
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class _DotNode:
    pos: int

    def __str__(self) -> str:
        return "."


@dataclass(frozen=True, slots=True)
class _NilNode:
    pos: int

    def __str__(self) -> str:
        return "nil"


@dataclass(frozen=True, slots=True)
class _BoolNode:
    pos: int
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(frozen=True, slots=True)
class _NumberNode:
    pos: int
    text: str
    is_int: bool
    is_uint: bool
    is_float: bool
    int_value: int
    float_value: float

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class _StringNode:
    pos: int
    quoted: str
    text: str

    def __str__(self) -> str:
        return self.quoted


@dataclass(frozen=True, slots=True)
class _ChainNode:
    pos: int
    node: _Operand
    fields: tuple[str, ...]

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, _PipeNode) else str(self.node)
        return inner + "".join("." + f for f in self.fields)


@dataclass(frozen=True, slots=True)
class _CommandNode:
    pos: int
    args: list[_Operand] = field(default_factory=list)

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _PipeNode) else str(a) for a in self.args)


@dataclass(slots=True)
class _PipeNode:
    pos: int
    decl: list[_VariableNode] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[_CommandNode] = field(default_factory=list)

    def __str__(self) -> str:
        head = ""
        if self.decl:
            head = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return head + " | ".join(str(c) for c in self.cmds)


_Operand: TypeAlias = (
    _FieldNode
    | _VariableNode
    | _IdentifierNode
    | _DotNode
    | _NilNode
    | _BoolNode
    | _NumberNode
    | _StringNode
    | _ChainNode
    | _PipeNode
)


@dataclass(frozen=True, slots=True)
class _ActionNode:
    pos: int
    pipe: _PipeNode


@dataclass(frozen=True, slots=True)
class _CondNode:
    """``if``/``with`` with its ``else if``/``else with`` chain flattened into ``branches``."""

    pos: int
    is_with: bool
    branches: list[tuple[_PipeNode, list[_Node]]]
    else_list: list[_Node] | None


@dataclass(frozen=True, slots=True)
class _EndNode:
    pos: int

    def __str__(self) -> str:
        return "{{end}}"


@dataclass(frozen=True, slots=True)
class _ElseNode:
    pos: int

    def __str__(self) -> str:
        return "{{else}}"


_Node: TypeAlias = _Text | _ActionNode | _CondNode

_OPERAND_START: Final = frozenset(
    {
        _K.BOOL,
        _K.CHAR_CONST,
        _K.DOT,
        _K.FIELD,
        _K.IDENT,
        _K.NUMBER,
        _K.NIL,
        _K.RAW_STRING,
        _K.STRING,
        _K.VARIABLE,
        _K.LPAREN,
    }
)
_UNSUPPORTED_ACTIONS: Final = {
    _K.RANGE: "range",
    _K.DEFINE: "define",
    _K.TEMPLATE: "template",
    _K.BLOCK: "block",
}


# ---------------------------------------------------------------------------------------------------------------
# Parser (mirrors text/template/parse/parse.go)
# ---------------------------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, src: str) -> None:
        self._src = src
        self._tokens_iter = _Lexer(src).tokens()
        self._tokens: list[_Token] = []
        self._i = 0
        self._vars: list[str] = ["$"]
        self._depth = 0

    # -- token stream ------------------------------------------------------------------------------------------

    def _next(self) -> _Token:
        if self._i == len(self._tokens):
            tok = next(self._tokens_iter, None)
            if tok is None:  # Past EOF: keep answering EOF.
                tok = self._tokens[-1]
            self._tokens.append(tok)
        tok = self._tokens[self._i]
        self._i += 1
        return tok

    def _backup(self) -> None:
        self._i -= 1

    def _peek(self) -> _Token:
        tok = self._next()
        self._backup()
        return tok

    def _next_non_space(self) -> _Token:
        tok = self._next()
        while tok.kind is _K.SPACE:
            tok = self._next()
        return tok

    def _peek_non_space(self) -> _Token:
        tok = self._next_non_space()
        self._backup()
        return tok

    # -- errors ------------------------------------------------------------------------------------------------

    def _fail(self, pos: int, msg: str) -> NoReturn:
        raise _error_at(self._src, pos, msg)

    def _unexpected(self, tok: _Token, context: str) -> NoReturn:
        self._fail(tok.pos, f"unexpected {tok} in {context}")

    def _expect(self, kind: _K, context: str) -> _Token:
        tok = self._next_non_space()
        if tok.kind is not kind:
            self._unexpected(tok, context)
        return tok

    def _enter(self, pos: int) -> None:
        self._depth += 1
        if self._depth > MAX_NESTING:
            self._fail(pos, f"nesting too deep (the limit is {MAX_NESTING} levels of if/with/parentheses)")

    # -- grammar -----------------------------------------------------------------------------------------------

    def parse(self) -> list[_Node]:
        root: list[_Node] = []
        while self._peek().kind is not _K.EOF:
            node = self._text_or_action()
            if isinstance(node, (_EndNode, _ElseNode)):
                self._fail(node.pos, f"unexpected {node}")
            root.append(node)
        return root

    def _item_list(self, opener: _Token) -> tuple[list[_Node], _EndNode | _ElseNode]:
        nodes: list[_Node] = []
        while self._peek_non_space().kind is not _K.EOF:
            node = self._text_or_action()
            if isinstance(node, (_EndNode, _ElseNode)):
                return nodes, node
            nodes.append(node)
        self._fail(opener.pos, f"unexpected EOF: {{{{{opener.val}}}}} has no matching {{{{end}}}}")

    def _text_or_action(self) -> _Node | _EndNode | _ElseNode:
        tok = self._next_non_space()
        if tok.kind is _K.TEXT:
            return _Text(tok.pos, tok.val)
        if tok.kind is _K.LEFT_DELIM:
            return self._action()
        self._unexpected(tok, "input")

    def _action(self) -> _Node | _EndNode | _ElseNode:
        tok = self._next_non_space()
        if tok.kind is _K.IF or tok.kind is _K.WITH:
            return self._control(tok)
        if tok.kind is _K.ELSE:
            peek = self._peek_non_space()
            if peek.kind is _K.IF or peek.kind is _K.WITH:
                return _ElseNode(peek.pos)  # "{{else if" is "{{else}}{{if"; the "if" stays pending.
            return _ElseNode(self._expect(_K.RIGHT_DELIM, "else").pos)
        if tok.kind is _K.END:
            return _EndNode(self._expect(_K.RIGHT_DELIM, "end").pos)
        if tok.kind in _UNSUPPORTED_ACTIONS:
            self._fail(tok.pos, f"{{{{{_UNSUPPORTED_ACTIONS[tok.kind]}}}}} is not supported")
        if tok.kind is _K.BREAK or tok.kind is _K.CONTINUE:
            self._fail(tok.pos, f"{{{{{tok.val}}}}} outside {{{{range}}}}")
        self._backup()
        pos = self._peek().pos
        return _ActionNode(pos, self._pipeline("command", _K.RIGHT_DELIM))

    def _control(self, opener: _Token) -> _CondNode:
        """``if``/``with`` and their ``else if``/``else with`` chains (Go nests these; here they are a list)."""
        self._enter(opener.pos)
        context = opener.val
        mark = len(self._vars)
        branches: list[tuple[_PipeNode, list[_Node]]] = []
        else_list: list[_Node] | None = None
        while True:
            pipe = self._pipeline(context, _K.RIGHT_DELIM)
            body, nxt = self._item_list(opener)
            branches.append((pipe, body))
            if isinstance(nxt, _EndNode):
                break
            chained = self._peek()
            if chained.kind is opener.kind:
                self._next()
                continue
            else_list, nxt = self._item_list(opener)
            if not isinstance(nxt, _EndNode):
                self._fail(nxt.pos, f"expected end; found {nxt}")
            break
        del self._vars[mark:]
        self._depth -= 1
        return _CondNode(opener.pos, opener.kind is _K.WITH, branches, else_list)

    def _pipeline(self, context: str, end: _K) -> _PipeNode:
        pipe = _PipeNode(self._peek_non_space().pos)
        var = self._peek_non_space()
        if var.kind is _K.VARIABLE:
            save = self._i
            self._next()
            nxt = self._peek_non_space()
            if nxt.kind is _K.ASSIGN or nxt.kind is _K.DECLARE:
                self._next_non_space()
                pipe.is_assign = nxt.kind is _K.ASSIGN
                pipe.decl.append(_VariableNode(var.pos, (var.val,)))
                self._vars.append(var.val)
            elif nxt.kind is _K.CHAR and nxt.val == ",":
                self._fail(nxt.pos, f"too many declarations in {context}")
            else:
                self._i = save
        while True:
            tok = self._next_non_space()
            if tok.kind is end:
                self._check_pipeline(pipe, context)
                return pipe
            if tok.kind in _OPERAND_START:
                self._backup()
                pipe.cmds.append(self._command())
            else:
                self._unexpected(tok, context)

    def _check_pipeline(self, pipe: _PipeNode, context: str) -> None:
        if not pipe.cmds:
            self._fail(pipe.pos, f"missing value for {context}")
        for i, cmd in enumerate(pipe.cmds[1:]):
            if isinstance(cmd.args[0], (_BoolNode, _DotNode, _NilNode, _NumberNode, _StringNode)):
                self._fail(cmd.pos, f"non executable command in pipeline stage {i + 2}")

    def _command(self) -> _CommandNode:
        cmd = _CommandNode(self._peek_non_space().pos)
        while True:
            self._peek_non_space()
            operand = self._operand()
            if operand is not None:
                cmd.args.append(operand)
            tok = self._next()
            if tok.kind is _K.SPACE:
                continue
            if tok.kind is _K.RIGHT_DELIM or tok.kind is _K.RPAREN:
                self._backup()
            elif tok.kind is not _K.PIPE:
                self._unexpected(tok, "operand")
            break
        if not cmd.args:
            self._fail(cmd.pos, "empty command")
        return cmd

    def _operand(self) -> _Operand | None:
        node = self._term()
        if node is None:
            return None
        if self._peek().kind is _K.FIELD:
            pos = self._peek().pos
            fields: list[str] = []
            while self._peek().kind is _K.FIELD:
                fields.append(self._next().val[1:])
            if isinstance(node, _FieldNode):
                return _FieldNode(pos, node.idents + tuple(fields))
            if isinstance(node, _VariableNode):
                return _VariableNode(pos, node.idents + tuple(fields))
            if isinstance(node, (_BoolNode, _StringNode, _NumberNode, _NilNode, _DotNode)):
                self._fail(pos, f"unexpected . after term {_go_quote(str(node))}")
            return _ChainNode(pos, node, tuple(fields))
        return node

    def _term(self) -> _Operand | None:
        tok = self._next_non_space()
        kind = tok.kind
        if kind is _K.IDENT:
            if tok.val in _UNSUPPORTED_FUNCS:
                self._fail(tok.pos, f"function {_go_quote(tok.val)} is not supported")
            if tok.val not in _FUNCS:
                self._fail(tok.pos, f"function {_go_quote(tok.val)} not defined")
            return _IdentifierNode(tok.pos, tok.val)
        if kind is _K.DOT:
            return _DotNode(tok.pos)
        if kind is _K.NIL:
            return _NilNode(tok.pos)
        if kind is _K.VARIABLE:
            if tok.val not in self._vars:
                self._fail(tok.pos, f"undefined variable {_go_quote(tok.val)}")
            return _VariableNode(tok.pos, (tok.val,))
        if kind is _K.FIELD:
            return _FieldNode(tok.pos, (tok.val[1:],))
        if kind is _K.BOOL:
            return _BoolNode(tok.pos, tok.val == "true")
        if kind is _K.NUMBER or kind is _K.CHAR_CONST:
            return self._number(tok)
        if kind is _K.LPAREN:
            self._enter(tok.pos)
            pipe = self._pipeline("parenthesized pipeline", _K.RPAREN)
            self._depth -= 1
            return pipe
        if kind is _K.STRING or kind is _K.RAW_STRING:
            text = _unquote_string(tok.val)
            if text is None:
                self._fail(tok.pos, f"invalid syntax in string literal {tok.val}")
            return _StringNode(tok.pos, tok.val, text)
        self._backup()
        return None

    def _number(self, tok: _Token) -> _NumberNode:
        """Go ``parse.newNumber`` (complex constants are not supported)."""
        text = tok.val
        if tok.kind is _K.CHAR_CONST:
            got = _unquote_char(text, 1, "'")
            if got is None:
                self._fail(tok.pos, f"invalid syntax in character constant {text}")
            value, _, end = got
            if text[end:] != "'":
                self._fail(tok.pos, f"malformed character constant: {text}")
            return _NumberNode(tok.pos, text, True, True, True, value, float(value))
        if text.endswith("i"):
            self._fail(tok.pos, "complex numbers are not supported")
        u = _go_parse_uint0(text)
        i = _go_parse_int0(text)
        is_uint = u is not None or i == 0
        is_int = i is not None
        if is_int or is_uint:
            value = i if i is not None else (u or 0)
            return _NumberNode(tok.pos, text, is_int, is_uint, True, value, float(value))
        f = _go_parse_float(text)
        if f is None:
            self._fail(tok.pos, f"illegal number syntax: {_go_quote(text)}")
        if not any(c in text for c in ".eEpP"):
            self._fail(tok.pos, f"integer overflow: {_go_quote(text)}")
        return _NumberNode(tok.pos, text, False, False, True, 0, f)


# ---------------------------------------------------------------------------------------------------------------
# Values and formatting (Go's fmt, for the types a template can produce)
# ---------------------------------------------------------------------------------------------------------------


class _CallError(Exception):
    """An error returned by a template function (Go: ``error calling NAME: ...``)."""


def _go_type(v: _Value) -> str:
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    return _CONTEXT_TYPE


def _truth(v: _Value) -> bool:
    """Go ``isTrue``."""
    if v is None:
        return False
    if isinstance(v, _Context):
        return True  # Struct values are always true.
    return bool(v)  # bool, non-zero numbers (NaN included), non-empty strings.


def _go_equal(a: _Value, b: _Value) -> bool:
    """Go ``==`` on two ``interface{}`` values: same dynamic type and equal values."""
    if a is None or b is None:
        return a is None and b is None
    return type(a) is type(b) and a == b


def _shortest_float(x: float, upper: bool) -> str:
    """Go ``strconv.FormatFloat(x, 'g', -1, 64)`` for a finite ``x >= 0`` (``%v`` of a float64)."""
    if x == 0:
        return "0"
    _, digit_tuple, exponent = Decimal(repr(x)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    nd = len(digits)
    dp = nd + exponent  # value = 0.DIGITS * 10**dp
    exp10 = dp - 1
    if exp10 < -4 or exp10 >= 6:  # Shortest formatting uses precision 6 for this decision.
        mantissa = digits[0] + ("." + digits[1:] if nd > 1 else "")
        return f"{mantissa}{'E' if upper else 'e'}{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if dp <= 0:
        return "0." + "0" * (-dp) + digits
    if dp >= nd:
        return digits + "0" * (dp - nd)
    return digits[:dp] + "." + digits[dp:]


@dataclass(slots=True)
class _Flags:
    minus: bool = False
    plus: bool = False
    space: bool = False
    zero: bool = False
    sharp: bool = False
    plus_v: bool = False
    wid: int | None = None
    prec: int | None = None


_PLAIN: Final = _Flags()


def _pad(s: str, f: _Flags, zero: bool = False) -> str:
    """Go ``fmt.pad``: widths count code points (Go counts runes)."""
    if f.wid is None or len(s) >= f.wid:
        return s
    fill = ("0" if zero else " ") * (f.wid - len(s))
    return s + fill if f.minus else fill + s


def _unsupported(what: str) -> NoReturn:
    raise _CallError(f"{what} is not supported")


def _fmt_string_pad(s: str, f: _Flags) -> str:
    if f.zero:
        _unsupported("the 0 flag with a non-numeric value")
    return _pad(s, f)


def _fmt_integer(v: int, verb: str, f: _Flags) -> str:
    """Go ``fmt.fmtInteger`` for ``%d``/``%v``/``%x``/``%X``."""
    neg = v < 0
    u = -v if neg else v
    digits = format(u, "x" if verb == "x" else "X" if verb == "X" else "d")
    if f.prec is not None:
        if f.prec == 0 and u == 0:
            return " " * (f.wid or 0)
        digits = digits.rjust(f.prec, "0")
    elif f.zero and f.wid is not None:
        digits = digits.rjust(f.wid - (1 if neg or f.plus or f.space else 0), "0")
    sign = "-" if neg else "+" if f.plus else " " if f.space else ""
    return _pad(sign + digits, f)


def _fmt_float(v: float, verb: str, f: _Flags) -> str:
    """Go ``fmt.fmtFloat`` for ``%v``/``%g``/``%G``/``%e``/``%E``/``%f``/``%F``."""
    if math.isnan(v):
        num = "+NaN"
    elif math.isinf(v):
        num = "+Inf" if v > 0 else "-Inf"
    else:
        neg = math.copysign(1.0, v) < 0
        x = abs(v)
        if verb in "vgG":
            if f.prec is None:
                body = _shortest_float(x, verb == "G")
            else:
                body = format(x, f".{f.prec}{'G' if verb == 'G' else 'g'}")
        else:
            prec = 6 if f.prec is None else f.prec
            body = format(x, f".{prec}{'f' if verb in 'fF' else verb}")
        num = ("-" if neg else "+") + body
    if f.space and num[0] == "+" and not f.plus:
        num = " " + num[1:]
    if num[1] in "IN":  # Infinities and NaN are never zero-padded.
        if num[1] == "N" and not f.space and not f.plus:
            num = num[1:]
        return _pad(num, f)
    if f.plus or num[0] != "+":
        if f.zero and not f.minus and f.wid is not None and f.wid > len(num):
            return num[0] + "0" * (f.wid - len(num)) + num[1:]
        return _pad(num, f)
    return _pad(num[1:], f, zero=f.zero and not f.minus)


def _bad_verb(v: _Value, verb: str, f: _Flags) -> str:
    """Go ``fmt.badVerb``: ``%!d(string=hello)``; the flags still apply to the value."""
    if v is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({_go_type(v)}={_fmt_arg(v, 'v', f)})"


_INT_VERBS_GO: Final = frozenset("bcdoOqxXUv")
_FLOAT_VERBS_GO: Final = frozenset("bgGxXfFeEv")
_STRING_VERBS_GO: Final = frozenset("vsxXq")


def _fmt_arg(v: _Value, verb: str, f: _Flags) -> str:
    """Format one printf operand like Go's ``fmt.(*pp).printArg``."""
    if verb == "T":
        return _fmt_string_pad(_go_type(v), f)
    if verb == "p":
        return _bad_verb(v, verb, f)
    if v is None:
        return _fmt_string_pad("<nil>", f) if verb == "v" else _bad_verb(v, verb, f)
    if isinstance(v, bool):
        if verb in ("t", "v"):
            return _fmt_string_pad("true" if v else "false", f)
        return _bad_verb(v, verb, f)
    if isinstance(v, int):
        if verb in ("d", "v", "x", "X"):
            return _fmt_integer(v, verb, f)
        if verb == "q":
            if f.plus or f.sharp:
                _unsupported("%q with the + or # flag")
            r = chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else "\ufffd"
            return _fmt_string_pad(_go_quote(r, "'"), f)
        if verb in _INT_VERBS_GO:
            _unsupported(f"%{verb} of an int")
        return _bad_verb(v, verb, f)
    if isinstance(v, float):
        if verb in "vgGeEfF":
            return _fmt_float(v, verb, f)
        if verb in _FLOAT_VERBS_GO:
            _unsupported(f"%{verb} of a float64")
        return _bad_verb(v, verb, f)
    if isinstance(v, str):
        if verb in ("s", "v", "q"):
            s = v if f.prec is None else v[: f.prec]
            if verb == "q":
                if f.plus or f.sharp:
                    _unsupported("%q with the + or # flag")
                s = _go_quote(s)
            return _fmt_string_pad(s, f)
        if verb in _STRING_VERBS_GO:
            _unsupported(f"%{verb} of a string")
        return _bad_verb(v, verb, f)
    # The context struct: Go formats each field with the verb; %+v adds field names.
    return "{" + ("Result:" if f.plus_v else "") + _fmt_arg(v.result, verb, f) + "}"


def _fmt_v(v: _Value) -> str:
    """Go's default format (``fmt.Sprint`` of one value)."""
    if isinstance(v, str):
        return v
    return _fmt_arg(v, "v", _PLAIN)


class _Builder:
    """A string builder that refuses to grow beyond :data:`MAX_OUTPUT_CHARS`."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def add(self, s: str) -> None:
        self.size += len(s)
        if self.size > MAX_OUTPUT_CHARS:
            raise _CallError(f"result exceeds {MAX_OUTPUT_CHARS} characters")
        self.parts.append(s)

    def text(self) -> str:
        return "".join(self.parts)


def _sprint(args: list[_Value]) -> str:
    """Go ``fmt.Sprint``: a space between operands when neither is a string."""
    out = _Builder()
    prev_string = False
    for i, a in enumerate(args):
        is_string = isinstance(a, str)
        if i > 0 and not is_string and not prev_string:
            out.add(" ")
        out.add(_fmt_v(a))
        prev_string = is_string
    return out.text()


def _sprintln(args: list[_Value]) -> str:
    out = _Builder()
    for i, a in enumerate(args):
        if i > 0:
            out.add(" ")
        out.add(_fmt_v(a))
    out.add("\n")
    return out.text()


def _parse_printf_num(s: str, i: int) -> tuple[int | None, int]:
    start = i
    while i < len(s) and "0" <= s[i] <= "9":
        i += 1
        if i - start > 6:
            raise _CallError(f"width or precision larger than {MAX_OUTPUT_CHARS}")
    if i == start:
        return None, i
    value = int(s[start:i])
    if value > MAX_OUTPUT_CHARS:
        raise _CallError(f"width or precision larger than {MAX_OUTPUT_CHARS}")
    return value, i


def _sprintf(fmt_s: str, args: list[_Value]) -> str:
    """Go ``fmt.Sprintf`` for the supported verbs and flags."""
    out = _Builder()
    n = len(fmt_s)
    i = 0
    argnum = 0
    while i < n:
        j = fmt_s.find("%", i)
        if j < 0:
            out.add(fmt_s[i:])
            break
        out.add(fmt_s[i:j])
        i = j + 1
        f = _Flags()
        while i < n and fmt_s[i] in "#0+- ":
            c = fmt_s[i]
            if c == "#":
                f.sharp = True
            elif c == "0":
                f.zero = not f.minus
            elif c == "+":
                f.plus = True
            elif c == "-":
                f.minus = True
                f.zero = False
            else:
                f.space = True
            i += 1
        if i < n and fmt_s[i] in "[*":
            _unsupported("printf argument indexes and * widths")
        f.wid, i = _parse_printf_num(fmt_s, i)
        if i < n and fmt_s[i] == ".":
            i += 1
            if i < n and fmt_s[i] in "[*":
                _unsupported("printf argument indexes and * precisions")
            prec, i = _parse_printf_num(fmt_s, i)
            f.prec = 0 if prec is None else prec
        if i < n and fmt_s[i] == "[":
            _unsupported("printf argument indexes")
        if i >= n:
            out.add("%!(NOVERB)")
            break
        verb = fmt_s[i]
        i += 1
        if verb == "%":
            out.add("%")
            continue
        if argnum >= len(args):
            out.add(f"%!{verb}(MISSING)")
            continue
        if f.sharp:
            _unsupported("the # flag")
        if verb == "v" and f.plus:
            f.plus = False
            f.plus_v = True
        out.add(_fmt_arg(args[argnum], verb, f))
        argnum += 1
    if argnum < len(args):
        extra = ", ".join("<nil>" if a is None else f"{_go_type(a)}={_fmt_v(a)}" for a in args[argnum:])
        out.add(f"%!(EXTRA {extra})")
    return out.text()


def _eval_args(args: list[_Value]) -> str:
    """Go ``text/template.evalArgs``: a single string as is, else ``fmt.Sprint``."""
    s = args[0] if len(args) == 1 and isinstance(args[0], str) else _sprint(args)
    if len(s) > MAX_OUTPUT_CHARS:
        raise _CallError(f"result exceeds {MAX_OUTPUT_CHARS} characters")
    return s


_HTML_ESCAPES: Final = {"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;"}
_JS_ESCAPES: Final = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "<": "\\u003C",
    ">": "\\u003E",
    "&": "\\u0026",
    "=": "\\u003D",
}


def _html_escape(s: str) -> str:
    return "".join(_HTML_ESCAPES.get(c, c) for c in s)


def _js_escape(s: str) -> str:
    out: list[str] = []
    for c in s:
        o = ord(c)
        if c in _JS_ESCAPES:
            out.append(_JS_ESCAPES[c])
        elif o < 0x20:
            out.append(f"\\u00{o:02X}")
        elif o < 0x80 or _is_print(c):
            out.append(c)
        else:
            out.append(f"\\u{o:04X}")
    return "".join(out)


def _checked(s: str) -> str:
    if len(s) > MAX_OUTPUT_CHARS:
        raise _CallError(f"result exceeds {MAX_OUTPUT_CHARS} characters")
    return s


def _compare(op: Callable[[float, float], bool], sop: Callable[[str, str], bool]) -> Callable[[list[_Value]], _Value]:
    """Upstream's ``lt``/``le``/``gt``/``ge``: numeric when both strings parse as float64, else lexicographic."""

    def impl(args: list[_Value]) -> _Value:
        a, b = args
        assert isinstance(a, str) and isinstance(b, str)
        fa, fb = _go_parse_float(a), _go_parse_float(b)
        if fa is not None and fb is not None:
            return op(fa, fb)
        return sop(a, b)  # Code-point order equals Go's byte order on UTF-8.

    return impl


def _len(args: list[_Value]) -> _Value:
    (v,) = args
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogatepass"))
    raise _CallError(f"len of type {_go_type(v)}")


def _printf(args: list[_Value]) -> _Value:
    fmt_s = args[0]
    assert isinstance(fmt_s, str)
    return _sprintf(fmt_s, args[1:])


class _P(enum.Enum):
    """How an argument is evaluated: Go parameter type ``string``, ``interface{}`` or ``reflect.Value``."""

    STRING = "string"
    ANY = "interface {}"
    VALUE = "reflect.Value"


@dataclass(frozen=True, slots=True)
class _Func:
    fixed: tuple[_P, ...]
    variadic: _P | None
    impl: Callable[[list[_Value]], _Value]


def _never(args: list[_Value]) -> _Value:  # pragma: no cover - and/or/call are evaluated specially
    raise _CallError("internal error")


_FUNCS: Final[dict[str, _Func]] = {
    # Upstream's overrides (pkg/util/template.go).
    "eq": _Func((_P.ANY, _P.ANY), None, lambda a: _go_equal(a[0], a[1])),
    "ne": _Func((_P.ANY, _P.ANY), None, lambda a: not _go_equal(a[0], a[1])),
    "lt": _Func((_P.STRING, _P.STRING), None, _compare(lambda x, y: x < y, lambda x, y: x < y)),
    "le": _Func((_P.STRING, _P.STRING), None, _compare(lambda x, y: x <= y, lambda x, y: x <= y)),
    "gt": _Func((_P.STRING, _P.STRING), None, _compare(lambda x, y: x > y, lambda x, y: x > y)),
    "ge": _Func((_P.STRING, _P.STRING), None, _compare(lambda x, y: x >= y, lambda x, y: x >= y)),
    # Go built-ins.
    "and": _Func((_P.VALUE,), _P.VALUE, _never),
    "or": _Func((_P.VALUE,), _P.VALUE, _never),
    "call": _Func((_P.VALUE,), _P.VALUE, _never),
    "not": _Func((_P.VALUE,), None, lambda a: not _truth(a[0])),
    "len": _Func((_P.VALUE,), None, _len),
    "print": _Func((), _P.ANY, _sprint),
    "println": _Func((), _P.ANY, _sprintln),
    "printf": _Func((_P.STRING,), _P.ANY, _printf),
    "html": _Func((), _P.ANY, lambda a: _checked(_html_escape(_eval_args(a)))),
    "js": _Func((), _P.ANY, lambda a: _checked(_js_escape(_eval_args(a)))),
    "urlquery": _Func((), _P.ANY, lambda a: _checked(quote_plus(_eval_args(a), safe=""))),
}
_UNSUPPORTED_FUNCS: Final = frozenset({"index", "slice"})


# ---------------------------------------------------------------------------------------------------------------
# Executor (mirrors text/template/exec.go)
# ---------------------------------------------------------------------------------------------------------------


class _State:
    def __init__(self, src: str, data: _Context) -> None:
        self._src = src
        self._vars: list[tuple[str, _Value]] = [("$", data)]
        self._data = data
        self._out = _Builder()

    def _fail(self, node: _Operand | _CommandNode | _Node, msg: str) -> NoReturn:
        context = str(node) if not isinstance(node, (_Text, _ActionNode, _CondNode)) else ""
        if len(context) > 20:
            context = context[:20] + "..."
        line, col = _location(self._src, node.pos)
        raise TemplateError(f"template: {line}:{col}: executing at <{context}>: {msg}", line=line, column=col)

    def run(self, nodes: list[_Node]) -> str:
        self._walk(self._data, nodes)
        return self._out.text()

    def _write(self, node: _Node, s: str) -> None:
        try:
            self._out.add(s)
        except _CallError:
            self._fail(node, f"output exceeds {MAX_OUTPUT_CHARS} characters")

    def _walk(self, dot: _Value, nodes: list[_Node]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self._write(node, node.text)
            elif isinstance(node, _ActionNode):
                value = self._eval_pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self._write(node, _fmt_v(value))
            else:
                self._walk_cond(dot, node)

    def _walk_cond(self, dot: _Value, node: _CondNode) -> None:
        mark = len(self._vars)
        for pipe, body in node.branches:
            value = self._eval_pipeline(dot, pipe)
            if _truth(value):
                self._walk(value if node.is_with else dot, body)
                break
        else:
            if node.else_list is not None:
                self._walk(dot, node.else_list)
        del self._vars[mark:]

    def _eval_pipeline(self, dot: _Value, pipe: _PipeNode) -> _Value:
        value: _Value | _Missing = _MISSING
        for cmd in pipe.cmds:
            value = self._eval_command(dot, cmd, value)
        assert not isinstance(value, _Missing)
        for var in pipe.decl:
            if pipe.is_assign:
                self._set_var(var, value)
            else:
                self._vars.append((var.idents[0], value))
        return value

    def _set_var(self, node: _VariableNode, value: _Value) -> None:
        name = node.idents[0]
        for i in range(len(self._vars) - 1, -1, -1):
            if self._vars[i][0] == name:
                self._vars[i] = (name, value)
                return
        self._fail(node, f"undefined variable: {name}")

    def _var_value(self, node: _VariableNode) -> _Value:
        name = node.idents[0]
        for var_name, value in reversed(self._vars):
            if var_name == name:
                return value
        self._fail(node, f"undefined variable: {name}")

    def _not_a_function(self, node: _Operand, args: list[_Operand] | None, final: _Value | _Missing) -> None:
        if (args is not None and len(args) > 1) or not isinstance(final, _Missing):
            self._fail(node, f"can't give argument to non-function {node}")

    def _eval_command(self, dot: _Value, cmd: _CommandNode, final: _Value | _Missing) -> _Value:
        first = cmd.args[0]
        if isinstance(first, _FieldNode):
            return self._eval_field_chain(first, dot, first.idents, cmd.args, final)
        if isinstance(first, _ChainNode):
            return self._eval_chain(dot, first, cmd.args, final)
        if isinstance(first, _IdentifierNode):
            return self._eval_function(dot, first, cmd.args, final)
        if isinstance(first, _VariableNode):
            return self._eval_variable(dot, first, cmd.args, final)
        self._not_a_function(first, cmd.args, final)
        if isinstance(first, _PipeNode):
            return self._eval_pipeline(dot, first)
        if isinstance(first, _BoolNode):
            return first.value
        if isinstance(first, _DotNode):
            return dot
        if isinstance(first, _NilNode):
            self._fail(first, "nil is not a command")
        if isinstance(first, _NumberNode):
            return self._ideal_constant(first)
        return first.text

    def _ideal_constant(self, node: _NumberNode) -> _Value:
        """Go ``idealConstant``: the type a number literal gets where no type is expected."""
        text = node.text
        is_hex_int = len(text) > 2 and text[0] == "0" and text[1] in "xX" and not any(c in text for c in "pP")
        if node.is_float and not is_hex_int and text[0] != "'" and any(c in text for c in ".eEpP"):
            return node.float_value
        if node.is_int:
            return node.int_value
        self._fail(node, f"{text} overflows int")

    def _eval_field_chain(
        self,
        node: _FieldNode | _VariableNode | _ChainNode,
        receiver: _Value,
        idents: tuple[str, ...],
        args: list[_Operand] | None,
        final: _Value | _Missing,
    ) -> _Value:
        for name in idents[:-1]:
            receiver = self._eval_field(node, name, None, _MISSING, receiver)
        return self._eval_field(node, idents[-1], args, final, receiver)

    def _eval_field(
        self,
        node: _FieldNode | _VariableNode | _ChainNode,
        name: str,
        args: list[_Operand] | None,
        final: _Value | _Missing,
        receiver: _Value,
    ) -> _Value:
        if isinstance(receiver, _Context) and name == "Result":
            if (args is not None and len(args) > 1) or not isinstance(final, _Missing):
                self._fail(node, f"{name} has arguments but cannot be invoked as function")
            return receiver.result
        if receiver is None:
            self._fail(node, f"nil pointer evaluating interface {{}}.{name}")
        self._fail(node, f"can't evaluate field {name} in type {_go_type(receiver)}")

    def _eval_chain(
        self, dot: _Value, chain: _ChainNode, args: list[_Operand] | None, final: _Value | _Missing
    ) -> _Value:
        if isinstance(chain.node, _NilNode):  # pragma: no cover - rejected by the parser
            self._fail(chain, f"indirection through explicit nil in {chain}")
        receiver = self._eval_arg(dot, None, chain.node)
        return self._eval_field_chain(chain, receiver, chain.fields, args, final)

    def _eval_variable(
        self, dot: _Value, node: _VariableNode, args: list[_Operand] | None, final: _Value | _Missing
    ) -> _Value:
        value = self._var_value(node)
        if len(node.idents) == 1:
            self._not_a_function(node, args, final)
            return value
        return self._eval_field_chain(node, value, node.idents[1:], args, final)

    def _validate(self, node: _Operand, value: _Value, ptype: _P | None) -> _Value:
        if ptype is _P.STRING and not isinstance(value, str):
            if value is None:
                self._fail(node, "invalid value; expected string")
            self._fail(node, f"wrong type for value; expected string; got {_go_type(value)}")
        return value

    def _eval_arg(self, dot: _Value, ptype: _P | None, node: _Operand) -> _Value:
        """Go ``evalArg``: evaluate an argument for a parameter of the given kind (``None``: untyped)."""
        if isinstance(node, _DotNode):
            return self._validate(node, dot, ptype)
        if isinstance(node, _NilNode):
            if ptype is _P.ANY:
                return None
            self._fail(node, f"cannot assign nil to {ptype.value if ptype else 'value'}")
        if isinstance(node, _FieldNode):
            return self._validate(node, self._eval_field_chain(node, dot, node.idents, [node], _MISSING), ptype)
        if isinstance(node, _VariableNode):
            return self._validate(node, self._eval_variable(dot, node, None, _MISSING), ptype)
        if isinstance(node, _PipeNode):
            return self._validate(node, self._eval_pipeline(dot, node), ptype)
        if isinstance(node, _IdentifierNode):
            return self._validate(node, self._eval_function(dot, node, None, _MISSING), ptype)
        if isinstance(node, _ChainNode):
            return self._validate(node, self._eval_chain(dot, node, None, _MISSING), ptype)
        if ptype is _P.STRING:
            if isinstance(node, _StringNode):
                return node.text
            self._fail(node, f"expected string; found {node}")
        if isinstance(node, _BoolNode):
            return node.value
        if isinstance(node, _NumberNode):
            return self._ideal_constant(node)
        return node.text

    def _eval_function(
        self, dot: _Value, node: _IdentifierNode, args: list[_Operand] | None, final: _Value | _Missing
    ) -> _Value:
        name = node.name
        spec = _FUNCS[name]
        call_args = args[1:] if args else []
        has_final = not isinstance(final, _Missing)
        num_in = len(call_args) + (1 if has_final else 0)
        num_fixed = len(spec.fixed)
        if spec.variadic is not None:
            if num_in < num_fixed:
                self._fail(node, f"wrong number of args for {name}: want at least {num_fixed} got {len(call_args)}")
        elif num_in != num_fixed:
            self._fail(node, f"wrong number of args for {name}: want {num_fixed} got {num_in}")

        if name in ("and", "or"):  # Short-circuit; the deciding value is the result.
            value: _Value | _Missing = _MISSING
            for arg in call_args:
                value = self._eval_arg(dot, _P.VALUE, arg)
                if _truth(value) == (name == "or"):
                    return value
            if has_final:
                value = final
            assert not isinstance(value, _Missing)
            return value

        argv: list[_Value] = []
        for i, arg in enumerate(call_args):
            ptype = spec.fixed[i] if i < num_fixed else spec.variadic
            argv.append(self._eval_arg(dot, ptype, arg))
        if has_final:
            assert not isinstance(final, _Missing)
            ptype = spec.fixed[num_in - 1] if num_in - 1 < num_fixed else spec.variadic
            argv.append(self._validate(node, final, ptype))
        if name == "call":
            callee = str(call_args[0]) if call_args else _fmt_v(argv[0])
            self._fail(node, f"error calling call: non-function {callee} of type {_go_type(argv[0])}")
        try:
            return spec.impl(argv)
        except _CallError as exc:
            self._fail(node, f"error calling {name}: {exc}")
