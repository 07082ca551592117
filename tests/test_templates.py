"""Tests for gamekeeper.core.templates, the safe subset of Go's text/template used by service-quality actions.

The upstream cases (tests/data/conformance/render_template.yaml, from pkg/util/template_test.go) run first; the
rest pin down Go behaviour the upstream tests do not cover. Expected outputs are what Go's text/template (with
upstream's custom eq/ne/lt/le/gt/ge) produces for the same template.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gamekeeper.core import templates
from gamekeeper.core.templates import (
    MAX_NESTING,
    MAX_OUTPUT_CHARS,
    MAX_TEMPLATE_CHARS,
    TemplateError,
    parse_int_from_template,
    render_template,
    render_template_strict,
)

CONFORMANCE = Path(__file__).parent / "data" / "conformance" / "render_template.yaml"


def _conformance_cases() -> list[Any]:
    data = yaml.safe_load(CONFORMANCE.read_text(encoding="utf-8"))
    assert data["function"] == "RenderTemplate"
    return [pytest.param(case, id=case["id"]) for case in data["cases"]]


@pytest.mark.parametrize("case", _conformance_cases())
def test_upstream_render_template(case: dict[str, Any]) -> None:
    inp = case["input"]
    assert render_template(inp["template"], inp["result"]) == case["expected"]


# ---------------------------------------------------------------------------------------------------------------
# Successful renderings
# ---------------------------------------------------------------------------------------------------------------

CHAIN = '{{if eq .Result "a"}}A{{else if eq .Result "b"}}B{{else if eq .Result "c"}}C{{else}}Z{{end}}'

RENDER_CASES: list[tuple[str, str, str, str]] = [
    # (id, template, result, expected)
    ("else-if a", CHAIN, "a", "A"),
    ("else-if b", CHAIN, "b", "B"),
    ("else-if c", CHAIN, "c", "C"),
    ("else-if fallthrough", CHAIN, "d", "Z"),
    ("else-if without else", '{{if eq .Result "x"}}X{{else if eq .Result "y"}}Y{{end}}.', "q", "."),
    ("nested if", '{{if ne .Result ""}}{{if gt .Result "10"}}hi{{else}}lo{{end}}{{else}}none{{end}}', "11", "hi"),
    ("with rebinds dot", "{{with .Result}}[{{.}}]{{else}}empty{{end}}", "42", "[42]"),
    ("with else", "{{with .Result}}[{{.}}]{{else}}empty{{end}}", "", "empty"),
    ("else with", '{{with ""}}x{{else with .Result}}[{{.}}]{{else}}none{{end}}', "r", "[r]"),
    ("else with falls to else", '{{with ""}}x{{else with .Result}}[{{.}}]{{else}}none{{end}}', "", "none"),
    ("with variable", "{{with $r := .Result}}{{$r}}{{$.Result}}{{end}}", "7", "77"),
    ("and returns last", '{{and .Result "yes"}}', "x", "yes"),
    ("and returns first falsy", '{{and .Result "yes"}}', "", ""),
    ("and of numbers", "{{and 1 0 2}}", "", "0"),
    ("or returns first truthy", '{{or .Result "default"}}', "", "default"),
    ("or keeps value", '{{or .Result "default"}}', "v", "v"),
    ("or short-circuits", "{{or .Result (lt .Result 5)}}", "x", "x"),
    ("and short-circuits", "{{and .Result (lt .Result 5)}}", "", ""),
    ("not", "{{not .Result}}|{{not 0}}|{{not true}}", "", "true|true|false"),
    ("and/or in if", '{{if and (ne .Result "") (ne .Result "0")}}up{{else}}down{{end}}', "0", "down"),
    ("or in if", '{{if or (eq .Result "a") (eq .Result "b")}}ok{{end}}', "b", "ok"),
    ("trim both sides", "a  {{- .Result -}}  b", "42", "a42b"),
    ("trim newlines", "line\n\t{{- .Result -}}\n\n  end", "42", "line42end"),
    ("trim only left", "a \n{{- .Result}} b", "42", "a42 b"),
    ("comment", "a{{/* hidden }} */}}b", "", "ab"),
    ("trimmed comment", "a  {{- /* c */ -}}  b", "", "ab"),
    ("minus without space is a number", "{{-3}}", "", "-3"),
    ("raw string", '{{`a\\n"b"`}}', "", 'a\\n"b"'),
    ("raw string with delimiters", "{{`}}{{`}}", "", "}}{{"),
    ("raw string drops carriage returns", "{{`a\r\nb`}}", "", "a\nb"),
    ("string escapes", '{{"a\\tb\\u00e9\\x41\\101\\"\\\\"}}', "", 'a\tbéAA"\\'),
    ("unicode text", "señal-{{.Result}}-✓", "ok", "señal-ok-✓"),
    ("delimiters in text", "a}}b{{.Result}}", "1", "a}}b1"),
    ("dot prints the context", "{{.}}", "42", "{42}"),
    ("pipe into printf", '{{.Result | printf "%s-suffix"}}', "42", "42-suffix"),
    ("pipe is last argument", '{{"a" | printf "%s%s" "b"}}', "", "ba"),
    ("pipe into eq", '{{.Result | eq "42"}}', "42", "true"),
    ("pipe into len", "{{.Result | len}}", "héllo", "6"),
    ("pipe chain", '{{.Result | printf "<%s>" | printf "[%s]"}}', "x", "[<x>]"),
    ("parenthesised", '{{printf "%s/%d" (printf "%s!" .Result) (len .Result)}}', "ab", "ab!/2"),
    ("field of parenthesised", "{{($).Result}}", "z", "z"),
    ("printf %d", '{{printf "%d" 42}}', "", "42"),
    ("printf zero pad", '{{printf "%05d|%-5d|%5d" 42 42 -42}}', "", "00042|42   |  -42"),
    ("printf signs", '{{printf "%+d|% d|%+v" 5 5 5}}', "", "+5| 5|5"),
    ("printf precision on ints", '{{printf "%.3d|%6.3d|%.0d|" 7 -7 0}}', "", "007|  -007||"),
    ("printf strings", '{{printf "%-4s|%4s|%.2s" "ab" "ab" "abc"}}', "", "ab  |  ab|ab"),
    ("printf %q", '{{printf "%q %q" .Result 65}}', 'say "hi"\n', '"say \\"hi\\"\\n" \'A\''),
    ("printf %v", '{{printf "%v %v %v %v" true 1.5 . nil}}', "42", "true 1.5 {42} <nil>"),
    ("printf %+v of the context", '{{printf "%+v" .}}', "42", "{Result:42}"),
    ("printf %%", '{{printf "%d%%" 5}}', "", "5%"),
    ("printf %x %X %t %T", '{{printf "%x %X %t %T %T" 255 255 false .Result 1.5}}', "", "ff FF false string float64"),
    (
        "printf floats",
        '{{printf "%6.2f|%-10.3e|%g|%.3g|%08.3f" 3.14159 1234.56 0.000001 1234.5678 -3.14159}}',
        "",
        "  3.14|1.235e+03 |1e-06|1.23e+03|-003.142",
    ),
    ("printf wrong type", '{{printf "%d" .Result}}', "42", "%!d(string=42)"),
    ("printf missing", '{{printf "%s %s" "a"}}', "", "a %!s(MISSING)"),
    ("printf extra", '{{printf "%s" "a" 1 nil}}', "", "a%!(EXTRA int=1, <nil>)"),
    ("printf no verb", '{{printf "a%"}}', "", "a%!(NOVERB)"),
    ("printf verb Go does not know", '{{printf "%z|%5d" 5 "ab"}}', "", "%!z(int=5)|%!d(string=   ab)"),
    ("printf struct field with %d", '{{printf "%d" .}}', "42", "{%!d(string=42)}"),
    ("print spacing", '{{print 1 2 "a" 3 "b" "c"}}', "", "1 2a3bc"),
    ("println", '{{println 1 "a" true}}', "", "1 a true\n"),
    ("print no args", "[{{print}}]", "", "[]"),
    (
        "numbers",
        "{{1.5}} {{2.0}} {{1e6}} {{100000.0}} {{1e-5}} {{0.0001}} {{1e21}}",
        "",
        "1.5 2 1e+06 100000 1e-05 0.0001 1e+21",
    ),
    (
        "integer literals",
        "{{0x1F}} {{1_000}} {{017}} {{0o17}} {{0b101}} {{-7}} {{+8}} {{'a'}} {{'\\n'}}",
        "",
        "31 1000 15 15 5 -7 8 97 10",
    ),
    ("hex float literal", "{{0x1p-2}}", "", "0.25"),
    ("bools", "{{true}} {{false}}", "", "true false"),
    ("numeric compare", '{{gt .Result "9"}}', "10", "true"),
    ("numeric lt 9 < 10", '{{lt "9" "10"}}', "", "true"),
    ("lexicographic when not numeric", '{{lt "9x" "10x"}}', "", "false"),
    ("lexicographic when one side is not numeric", '{{gt .Result "10"}}', "9a", "true"),
    ("string comparison", '{{gt "b" "a"}} {{le "a" "a"}} {{ge "a" "b"}}', "", "true true false"),
    ("exponent is numeric", '{{lt "1e3" "999"}}', "", "false"),
    ("hex float string is numeric", '{{lt "0x10p0" "17"}}', "", "true"),
    ("leading space is not numeric", '{{gt " 10" "9"}}', "", "false"),
    ("underscore between digits is numeric", '{{gt "1_000" "999"}}', "", "true"),
    ("NaN is numeric", '{{gt "NaN" "1"}} {{lt "NaN" "1"}}', "", "false false"),
    ("inf is numeric", '{{gt "inf" "1e308"}} {{lt "-Infinity" "-1e308"}}', "", "true true"),
    ("float overflow is not numeric", '{{gt "1e400" "2"}}', "", "false"),
    ("signed nan is not numeric", '{{gt "+nan" "1"}}', "", "false"),
    ("negative numbers", '{{lt .Result "-2"}}', "-10", "true"),
    ("eq string vs number", "{{eq .Result 42}}|{{ne .Result 42}}", "42", "false|true"),
    ("eq numbers", "{{eq 42 42}}|{{eq 1 1.0}}|{{eq 1.5 1.5}}|{{eq true true}}", "", "true|false|true|true"),
    ("eq nil", "{{eq .Result nil}}|{{eq nil nil}}", "", "false|true"),
    ("len bytes", "{{len .Result}}", "héllo", "6"),
    ("html", "{{html .Result}}", "<a href='x'>\"&\"</a>", "&lt;a href=&#39;x&#39;&gt;&#34;&amp;&#34;&lt;/a&gt;"),
    ("html of several args", "{{html 1 2}}", "", "1 2"),
    ("js", "{{js .Result}}", "it's <b>=\"\\\n", "it\\'s \\u003Cb\\u003E\\u003D\\\"\\\\\\u000A"),
    ("urlquery", "{{urlquery .Result}}", "a b&c=d/é~", "a+b%26c%3Dd%2F%C3%A9~"),
    ("variables", "{{$x := .Result}}{{$x}}-{{$x}}", "42", "42-42"),
    ("variable assignment", '{{$x := "a"}}{{if true}}{{$x = "b"}}{{end}}{{$x}}', "", "b"),
    ("variable scope ends with if", '{{$x := "a"}}{{if true}}{{$x := "b"}}{{$x}}{{end}}{{$x}}', "", "ba"),
    ("root variable", "{{$.Result}}", "42", "42"),
    ("declaration in if", "{{if $v := .Result}}{{$v}}{{end}}", "9", "9"),
    ("function as argument", '{{eq print ""}}', "", "true"),
    ("trailing pipe is accepted", "{{.Result |}}", "x", "x"),
    ("only a comment", "{{/* nothing */}}", "", ""),
    ("multi-line action", '{{if\n  eq .Result "1"\n}}one{{end}}', "1", "one"),
]


@pytest.mark.parametrize(("template", "result", "expected"), [pytest.param(*c[1:], id=c[0]) for c in RENDER_CASES])
def test_render(template: str, result: str, expected: str) -> None:
    assert render_template_strict(template, result) == expected
    assert render_template(template, result) == expected


def test_no_delimiters_is_returned_unchanged() -> None:
    huge = "x" * (MAX_TEMPLATE_CHARS * 4) + "}}"
    assert render_template(huge, "r") is huge
    assert render_template_strict(huge, "r") is huge
    assert render_template("", "r") == ""


# ---------------------------------------------------------------------------------------------------------------
# Errors: render_template returns the original, render_template_strict explains
# ---------------------------------------------------------------------------------------------------------------

ERROR_CASES: list[tuple[str, str, str]] = [
    # (id, template, fragment of the message); the result is always "42".
    ("unknown function", "{{foo .Result}}", 'template: 1:3: function "foo" not defined'),
    ("unknown function in pipeline", "{{.Result | upper}}", 'function "upper" not defined'),
    ("unterminated action", "x {{.Result", "template: 1:3: unclosed action"),
    ("unterminated action after space", "{{ .Result ", "unclosed action"),
    ("unclosed if", "{{if .Result}}x", "template: 1:3: unexpected EOF: {{if}} has no matching {{end}}"),
    ("unclosed with", "{{with .Result}}x{{else}}y", "{{with}} has no matching {{end}}"),
    ("field of a string", "{{.Result.Foo}}", "can't evaluate field Foo in type string"),
    (
        "unknown field",
        "{{.InvalidField}}",
        "template: 1:3: executing at <.InvalidField>: can't evaluate field InvalidField in type util.TemplateContext",
    ),
    ("lower-case field", "{{.result}}", "can't evaluate field result"),
    ("field after with", "{{with .Result}}{{.Result}}{{end}}", "can't evaluate field Result in type string"),
    ("python attribute", "{{.__class__}}", "can't evaluate field __class__"),
    ("python attribute of a string", "{{print.__class__}}", "can't evaluate field __class__ in type string"),
    ("lt with a number", "{{lt .Result 5}}", "template: 1:14: executing at <5>: expected string; found 5"),
    ("gt with a bool", "{{gt .Result true}}", "expected string; found true"),
    ("lt with a piped int", '{{len .Result | lt "5"}}', "wrong type for value; expected string; got int"),
    ("eq with three args", '{{eq .Result "a" "b"}}', "wrong number of args for eq: want 2 got 3"),
    ("ne with one arg", "{{ne .Result}}", "wrong number of args for ne: want 2 got 1"),
    ("not with two args", "{{not 1 2}}", "wrong number of args for not: want 1 got 2"),
    ("and without args", "{{and}}", "wrong number of args for and: want at least 1 got 0"),
    ("len of int", "{{len 3}}", "error calling len: len of type int"),
    ("printf without format", "{{printf}}", "wrong number of args for printf: want at least 1 got 0"),
    ("printf with a number format", "{{printf 1}}", "expected string; found 1"),
    ("printf argument index", '{{printf "%[1]d" 1}}', "error calling printf: printf argument indexes"),
    ("printf # flag", '{{printf "%#v" 1}}', "the # flag is not supported"),
    ("printf verb not in the subset", '{{printf "%b" 5}}', "error calling printf: %b of an int is not supported"),
    ("printf huge width", '{{printf "%9999999d" 1}}', "width or precision larger than"),
    ("call", "{{call .Result}}", "error calling call: non-function .Result of type string"),
    ("range", "{{range .Result}}x{{end}}", "template: 1:3: {{range}} is not supported"),
    ("define", '{{define "x"}}y{{end}}', "{{define}} is not supported"),
    ("template", '{{template "x"}}', "{{template}} is not supported"),
    ("block", '{{block "x" .}}y{{end}}', "{{block}} is not supported"),
    ("break", "{{break}}", "{{break}} outside {{range}}"),
    ("index", "{{index .Result 0}}", 'function "index" is not supported'),
    ("slice", "{{slice .Result 1}}", 'function "slice" is not supported'),
    ("stray end", "a{{end}}", "template: 1:7: unexpected {{end}}"),
    ("stray else", "{{else}}", "unexpected {{else}}"),
    ("two elses", "{{if .Result}}a{{else}}b{{else}}c{{end}}", "expected end; found {{else}}"),
    ("else if inside with", "{{with .Result}}a{{else if .Result}}b{{end}}", "unexpected <if> in input"),
    ("empty action", "{{}}", "missing value for command"),
    ("empty if", "{{if}}x{{end}}", "missing value for if"),
    ("unterminated string", '{{"abc}}', "unterminated quoted string"),
    ("unterminated raw string", "{{`abc}}", "unterminated raw quoted string"),
    ("bad escape", '{{"\\q"}}', "invalid syntax in string literal"),
    ("escape making invalid UTF-8", '{{"\\xff"}}', "invalid syntax in string literal"),
    ("unclosed comment", "{{/* x", "unclosed comment"),
    ("text after comment", "{{/* x */ .Result}}", "comment ends before closing delimiter"),
    ("unclosed paren", "{{(.Result}}", "unclosed left paren"),
    ("extra paren", "{{.Result)}}", "unexpected right paren"),
    ("undefined variable", "{{$x}}", 'undefined variable "$x"'),
    ("variable out of scope", "{{if .Result}}{{$y := 1}}{{end}}{{$y}}", 'undefined variable "$y"'),
    ("nil command", "{{nil}}", "nil is not a command"),
    ("field with arguments", '{{.Result "x"}}', "Result has arguments but cannot be invoked as function"),
    ("literal with arguments", '{{"x" 1}}', "can't give argument to non-function"),
    ("literal in pipeline", '{{.Result | "x"}}', "non executable command in pipeline stage 2"),
    ("missing space", '{{"a""b"}}', 'unexpected "\\"b\\"" in operand'),
    ("missing space after identifier", '{{print"a"}}', "bad character U+0022"),
    ("bad character", "{{.Result!}}", "bad character U+0021 '!'"),
    ("unrecognized character", "{{ \u00a0 }}", "unrecognized character in action: U+00A0"),
    ("field of a literal", '{{"x".Foo}}', 'unexpected . after term "\\"x\\""'),
    ("integer overflow", "{{99999999999999999999}}", "integer overflow"),
    ("uint overflows int", "{{18446744073709551615}}", "18446744073709551615 overflows int"),
    ("bad number", "{{1x}}", "bad number syntax"),
    ("complex", "{{1+2i}}", "complex numbers are not supported"),
    ("bad char constant", "{{'ab'}}", "malformed character constant"),
    ("declare without value", "{{$x := }}", "missing value for command"),
    ("two declarations", "{{$x, $y := 1}}", "too many declarations in command"),
    ("colon without equals", "{{$x : 1}}", "expected :="),
]


@pytest.mark.parametrize(("template", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in ERROR_CASES])
def test_errors(template: str, fragment: str) -> None:
    assert render_template(template, "42") == template
    with pytest.raises(TemplateError) as info:
        render_template_strict(template, "42")
    message = str(info.value)
    assert fragment in message
    assert re.match(r"template: \d+:\d+: ", message), message


def test_error_location_is_line_and_column() -> None:
    with pytest.raises(TemplateError) as info:
        render_template_strict("{{.Result}} {{foo}}", "1")
    assert str(info.value) == 'template: 1:15: function "foo" not defined'
    assert (info.value.line, info.value.column) == (1, 15)
    with pytest.raises(TemplateError) as info:
        render_template_strict("first\n  {{ .Result.Foo }}", "1")
    assert str(info.value).startswith("template: 2:13: executing at <.Result.Foo>:")
    assert (info.value.line, info.value.column) == (2, 13)


def test_error_aborts_partial_output() -> None:
    template = 'ok {{.Result}} {{if eq .Result "1"}}{{.Bad}}{{end}}'
    assert render_template(template, "2") == "ok 2 "
    assert render_template(template, "1") == template


# ---------------------------------------------------------------------------------------------------------------
# Limits and safety
# ---------------------------------------------------------------------------------------------------------------


def test_template_length_limit() -> None:
    at_limit = "{{.Result}}" + "x" * (MAX_TEMPLATE_CHARS - len("{{.Result}}"))
    assert render_template_strict(at_limit, "r") == "r" + "x" * (MAX_TEMPLATE_CHARS - len("{{.Result}}"))
    too_long = at_limit + "x"
    assert render_template(too_long, "r") == too_long
    with pytest.raises(TemplateError, match="template is too long"):
        render_template_strict(too_long, "r")


def test_output_limit() -> None:
    result = "y" * 1000
    ok = "{{.Result}}" * (MAX_OUTPUT_CHARS // 1000)
    assert len(render_template_strict(ok, result)) == (MAX_OUTPUT_CHARS // 1000) * 1000
    too_much = ok + "{{.Result}}"
    assert render_template(too_much, result) == too_much
    with pytest.raises(TemplateError, match="output exceeds"):
        render_template_strict(too_much, result)
    with pytest.raises(TemplateError, match="output exceeds"):
        render_template_strict("{{.Result}}", "z" * (MAX_OUTPUT_CHARS + 1))


def test_intermediate_strings_are_limited() -> None:
    # Each level doubles the string; 20 levels would be 42 MB without the limit.
    template = "{{$x := .Result}}" + '{{$x = printf "%s%s" $x $x}}' * 20 + "{{len $x}}"
    with pytest.raises(TemplateError, match="error calling printf: result exceeds"):
        render_template_strict(template, "x" * 100)
    assert render_template_strict(template.replace("* 20", ""), "") == "0"
    with pytest.raises(TemplateError, match="result exceeds"):
        render_template_strict("{{js .Result}}", "<" * MAX_OUTPUT_CHARS)


def test_nesting_limit() -> None:
    deep_ok = "{{" + "(" * (MAX_NESTING - 1) + ".Result" + ")" * (MAX_NESTING - 1) + "}}"
    assert render_template_strict(deep_ok, "r") == "r"
    ifs_ok = "{{if .Result}}" * MAX_NESTING + "x" + "{{end}}" * MAX_NESTING
    assert render_template_strict(ifs_ok, "r") == "x"
    too_deep = "{{" + "(" * 5000 + ".Result" + ")" * 5000 + "}}"
    with pytest.raises(TemplateError, match="nesting too deep"):
        render_template_strict(too_deep, "r")
    assert render_template(too_deep, "r") == too_deep
    ifs_too_deep = "{{if .Result}}" * (MAX_NESTING + 1) + "x" + "{{end}}" * (MAX_NESTING + 1)
    with pytest.raises(TemplateError, match="nesting too deep"):
        render_template_strict(ifs_too_deep, "r")


def test_nesting_limit_fits_a_deep_caller_stack() -> None:
    ifs = "{{with $}}" * MAX_NESTING + "{{.Result}}" + "{{end}}" * MAX_NESTING
    parens = "{{" + "(" * MAX_NESTING + "printf .Result" + ")" * MAX_NESTING + "}}"

    def recurse(n: int, template: str) -> str:
        return recurse(n - 1, template) if n else render_template_strict(template, "r")

    # A caller that has already used all but 300 frames of Python's default stack still works.
    spare = 300
    depth = sys.getrecursionlimit() - spare - len(_stack())
    assert depth > 0
    assert recurse(depth, ifs) == "r"
    assert recurse(depth, parens) == "r"


def _stack() -> list[object]:
    frames: list[object] = []
    frame = sys._getframe()
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back  # type: ignore[assignment]
    return frames


def test_long_else_if_chain_is_not_nesting() -> None:
    branches = "".join(f'{{{{else if eq .Result "{i}"}}}}v{i}' for i in range(1, 1000))
    template = '{{if eq .Result "0"}}v0' + branches + "{{else}}none{{end}}"
    assert render_template_strict(template, "999") == "v999"
    assert render_template_strict(template, "x") == "none"


def test_source_has_no_dynamic_code_or_io() -> None:
    source = Path(templates.__file__).read_text(encoding="utf-8")
    for forbidden in (
        r"\beval\(",
        r"\bexec\(",
        r"\bcompile\(",
        r"__import__",
        r"\bgetattr\(",
        r"\bopen\(",
        r"^import os",
        r"^import subprocess",
    ):
        assert not re.search(forbidden, source, re.MULTILINE), forbidden


TOKENS = [
    "{{",
    "}}",
    "{{- ",
    " -}}",
    " ",
    ".",
    ".Result",
    ".Foo",
    "$",
    "$x",
    ":=",
    "=",
    "|",
    "(",
    ")",
    '"a"',
    "`b`",
    "'c'",
    "1",
    "-2",
    "1.5",
    "0x1F",
    "1e3",
    "true",
    "false",
    "nil",
    "if",
    "else",
    "end",
    "with",
    "range",
    "eq",
    "ne",
    "lt",
    "gt",
    "and",
    "or",
    "not",
    "len",
    "print",
    "printf",
    '"%d %s %v %q %5.2f %x %"',
    "html",
    "js",
    "urlquery",
    "call",
    "/*",
    "*/",
    "\n",
    "-",
    "+",
    ",",
    "!",
    "é",
    "\\",
    '"',
    "{",
    "}",
    "%",
    "text",
]


def test_fuzz_only_template_errors() -> None:
    rng = random.Random(20240611)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(6000):
        template = "".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 14)))
        result = rng.choice(["", "42", "-1.5", "abc", "x y", "1e400", "NaN"])
        try:
            out = render_template_strict(template, result)
        except TemplateError as exc:
            assert "internal error" not in str(exc)
            assert render_template(template, result) == template
            outcomes["error"] += 1
        else:
            assert isinstance(out, str)
            outcomes["ok"] += 1
    assert outcomes["ok"] > 100 and outcomes["error"] > 100


# ---------------------------------------------------------------------------------------------------------------
# parse_int_from_template (upstream ParseIntOrStringFromTemplate)
# ---------------------------------------------------------------------------------------------------------------

PRIORITY = '{{if eq .Result "0"}}1{{else}}100{{end}}'


@pytest.mark.parametrize(
    ("template", "result", "expected"),
    [
        ("{{.Result}}", "75", 75),
        ("{{.Result}}", "-3", -3),
        ("{{.Result}}", "+4", 4),
        ("{{.Result}}", "007", 7),
        ("{{.Result}}", "9223372036854775807", 9223372036854775807),
        ("{{.Result}}", "-9223372036854775808", -9223372036854775808),
        (PRIORITY, "0", 1),
        (PRIORITY, "3", 100),
        ("{{len .Result}}", "abc", 3),
        ("{{- .Result -}}", "5", 5),
    ],
)
def test_parse_int_from_template(template: str, result: str, expected: int) -> None:
    assert parse_int_from_template(template, result) == expected


@pytest.mark.parametrize(
    ("template", "result", "message"),
    [
        ("{{.Result}}", " 4", "priority value must be numeric, got:  4"),
        ("{{.Result}}", "4 ", "priority value must be numeric"),
        ("{{.Result}}", "", "rendered value is empty (template: {{.Result}}, result: )"),
        ("{{.Result}}", "4.0", "priority value must be numeric, got: 4.0"),
        ("{{.Result}}", "1_000", "priority value must be numeric"),
        ("{{.Result}}", "0x10", "priority value must be numeric"),
        ("{{.Result}}", "+", "priority value must be numeric"),
        ("{{.Result}}", "٤", "priority value must be numeric"),
        ("{{.Result}}", "9223372036854775808", "priority value must be numeric"),
        ("{{.Result}}", "-9223372036854775809", "priority value must be numeric"),
        ("{{.Result}}", "1" * 5000, "priority value must be numeric"),
        ("{{.Result}}", "high", "got: high (template: {{.Result}}, probe result: high)"),
        ("{{.Bad}}", "5", "got: {{.Bad}} (template: {{.Bad}}, probe result: 5)"),
        ("{{/* nothing */}}", "5", "rendered value is empty"),
    ],
)
def test_parse_int_from_template_errors(template: str, result: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_int_from_template(template, result)
    assert message in str(info.value)


def test_parse_float_matches_go() -> None:
    parse: Callable[[str], float | None] = templates._go_parse_float
    accepted = {
        "1": 1.0,
        "-1.5": -1.5,
        "+.5": 0.5,
        "1.": 1.0,
        "1e3": 1000.0,
        "1E-2": 0.01,
        "1_000.5": 1000.5,
        "0x1p-2": 0.25,
        "0X1.8P1": 3.0,
        "0x_1p0": 1.0,
        "1e-400": 0.0,
    }
    for text, value in accepted.items():
        assert parse(text) == value, text
    assert parse("Inf") == float("inf") and parse("-infinity") == float("-inf")
    nan = parse("nAn")
    assert nan is not None and nan != nan
    for text in [
        "",
        " 1",
        "1 ",
        "1_",
        "_1",
        "1__0",
        "1._5",
        "0x10",
        "0x",
        ".",
        "e3",
        "1e",
        "1e+",
        "+nan",
        "infin",
        "1e400",
        "0b1",
        "٤",
        "1,5",
        "--1",
        "1.2.3",
    ]:
        assert parse(text) is None, text
