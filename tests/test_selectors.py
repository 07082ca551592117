"""gamekeeper.core.selectors against upstream's own table cases (tests/data/selectors/, see its README)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gamekeeper.core import selectors as sel
from gamekeeper.core.selectors import (
    SelectorError,
    new_requirement,
    parse_field_selector,
    parse_label_selector,
    parse_selection,
    parse_sort_path,
    relaxed_jsonpath,
    sort_objects,
)

DATA = Path(__file__).parent / "data" / "selectors"
LABELS: dict[str, Any] = yaml.safe_load((DATA / "labels.yaml").read_text())
FIELDS: dict[str, Any] = yaml.safe_load((DATA / "fields.yaml").read_text())
SORT: dict[str, Any] = yaml.safe_load((DATA / "sort.yaml").read_text())


# --- label selectors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", LABELS["good"])
def test_label_selector_prints_back(text: str) -> None:
    assert str(parse_label_selector(text)) == text.replace(" ", "")


@pytest.mark.parametrize("text", LABELS["bad"])
def test_label_selector_refused(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(text)


def test_label_selector_is_deterministic() -> None:
    a, b = LABELS["deterministic"]
    assert str(parse_label_selector(a)) == str(parse_label_selector(b)) == "a=x,x=a"


@pytest.mark.parametrize("case", LABELS["matches"], ids=lambda c: f"{c['selector']}~{c['labels']}")
def test_label_selector_matches(case: dict[str, Any]) -> None:
    assert parse_label_selector(case["selector"]).matches(case["labels"]) is case["match"]


@pytest.mark.parametrize("case", LABELS["parse"], ids=lambda c: repr(c["in"]))
def test_label_selector_parser(case: dict[str, Any]) -> None:
    if not case["valid"]:
        with pytest.raises(SelectorError):
            parse_label_selector(case["in"])
        return
    got = parse_label_selector(case["in"])
    assert [[r.key, r.operator, list(r.values)] for r in got.requirements] == case["out"]


@pytest.mark.parametrize("case", LABELS["errors"], ids=lambda c: c["in"])
def test_label_selector_error_text(case: dict[str, Any]) -> None:
    with pytest.raises(SelectorError) as info:
        parse_label_selector(case["in"])
    assert str(info.value) == case["error"]


@pytest.mark.parametrize(("token", "ok"), [
    ("in", True), ("=", True), ("==", True), (">", True), ("<", True), ("notin", True), ("!=", True),
    ("!", False), ("exists", False), ("(", False),
])
def test_operator_tokens(token: str, ok: bool) -> None:
    # TestParseOperator through the parser: "x <token> v" parses only for binary operators.
    text = f"x {token} (v)" if token in ("in", "notin") else f"x{token}1"
    if ok:
        parse_label_selector(text)
    else:
        with pytest.raises(SelectorError, match=r"expected: in, notin, =, ==, !=, gt, lt"):
            parse_label_selector(f"x {token} 1")


def test_requirement_constructor_errors() -> None:
    # TestRequirementConstructor: every problem is reported, in apimachinery's aggregate form.
    with pytest.raises(SelectorError, match=r"^values: Invalid value: \[\]: for 'in', 'notin' operators"):
        new_requirement("x1", sel.IN, [])
    with pytest.raises(SelectorError, match=r'^values: Invalid value: \["bar","foo"\]: exact-match'):
        new_requirement("x5", sel.EQUALS, ["bar", "foo"])
    with pytest.raises(SelectorError, match=r'^values: Invalid value: \["foo"\]: values set must be empty'):
        new_requirement("x8", sel.EXISTS, ["foo"])
    with pytest.raises(SelectorError, match=r'^key: Invalid value: "a{254}": name part must be no more than 63'):
        new_requirement("a" * 254, sel.EXISTS, [])
    with pytest.raises(SelectorError, match=r'^values\[0\]\[x16\]: Invalid value: "a{254}": must be no more'):
        new_requirement("x16", sel.EQUALS, ["a" * 254])
    with pytest.raises(SelectorError, match=r'^values\[0\]\[x17\]: Invalid value: "a b": a valid label'):
        new_requirement("x17", sel.EQUALS, ["a b"])
    with pytest.raises(SelectorError, match=r'^operator: Unsupported value: "unsupportedOp": supported values: '
                                             r'"in", "notin", "=", "==", "!=", "gt", "lt", "exists", "!"$'):
        new_requirement("x18", "unsupportedOp", [])
    with pytest.raises(SelectorError) as info:
        new_requirement("-bad", sel.GREATER_THAN, ["a"])
    assert str(info.value).startswith('[key: Invalid value: "-bad": name part must consist')
    assert "values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer" in str(
        info.value)
    assert new_requirement("x11", sel.GREATER_THAN, ["1"]).matches({"x11": "2"})


def test_requirement_strings() -> None:
    # TestToString
    assert str(parse_label_selector("x in (abc,def),y notin (jkl),z")) == "x in (abc,def),y notin (jkl),z"
    assert str(parse_label_selector("x notin (def,abc),y!=jkl,!z")) == "x notin (abc,def),y!=jkl,!z"
    assert str(parse_label_selector("x notin (abc),y in (jkl,mno),z notin ()")) == (
        "x notin (abc),y in (jkl,mno),z notin ()")
    assert str(parse_label_selector("x>2,y<8,z")) == "x>2,y<8,z"


def test_gt_lt_need_integers_on_both_sides() -> None:
    s = parse_label_selector("rank>5")
    assert s.matches({"rank": "6"}) and not s.matches({"rank": "5"}) and not s.matches({"rank": "six"})
    assert not s.matches({})


def test_label_helpers() -> None:
    assert sel.label_key_errors("game.kruise.io/owner-gss") == []
    assert sel.label_key_errors("/x") == ["prefix part must be non-empty"]
    assert sel.label_value_errors("") == []
    assert sel.label_value_errors("a" * 64)[0] == "must be no more than 63 bytes"


# --- field selectors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "terms"), FIELDS["split_terms"])
def test_field_split_terms(text: str, terms: list[str]) -> None:
    assert sel._split_terms(text) == terms


@pytest.mark.parametrize("case", FIELDS["split_term"], ids=lambda c: c[0])
def test_field_split_term(case: list[Any]) -> None:
    expected = None if case[1] is None else tuple(case[1:])
    assert sel._split_term(case[0]) == expected


@pytest.mark.parametrize(("plain", "escaped"), FIELDS["escape"])
def test_field_escape_round_trip(plain: str, escaped: str) -> None:
    assert sel.escape_field_value(plain) == escaped
    assert sel.unescape_field_value(escaped) == plain


@pytest.mark.parametrize("text", FIELDS["invalid_escapes"])
def test_field_invalid_escape(text: str) -> None:
    with pytest.raises(SelectorError, match="invalid escape sequence"):
        sel.unescape_field_value(text)


@pytest.mark.parametrize("text", FIELDS["good"])
def test_field_selector_prints_back(text: str) -> None:
    assert str(parse_field_selector(text)) == text


@pytest.mark.parametrize("text", FIELDS["bad"])
def test_field_selector_refused(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_field_selector(text)


def test_field_selector_is_deterministic() -> None:
    a, b = FIELDS["deterministic"]
    assert str(parse_field_selector(a)) == str(parse_field_selector(b)) == "a=x,x=a"


@pytest.mark.parametrize("case", FIELDS["matches"], ids=lambda c: c["selector"])
def test_field_selector_matches(case: dict[str, Any]) -> None:
    assert parse_field_selector(case["selector"]).matches(case["fields"]) is case["match"]


@pytest.mark.parametrize("case", FIELDS["errors"], ids=lambda c: c["in"])
def test_field_selector_error_text(case: dict[str, Any]) -> None:
    with pytest.raises(SelectorError) as info:
        parse_field_selector(case["in"])
    assert str(info.value) == case["error"]


def _gs(name: str, ops: str | None = "None", state: str = "Ready", gss: str = "minecraft", **spec: Any) -> dict[
        str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name, "namespace": "default",
                                         "labels": {"game.kruise.io/owner-gss": gss}},
                            "spec": dict(spec), "status": {"currentState": state}}
    if ops is not None:
        body["spec"]["opsState"] = ops
    return body


def test_selection_on_game_server_fields() -> None:
    fleet = [_gs("minecraft-0", "WaitToBeDeleted"), _gs("minecraft-1"), _gs("minecraft-2", "WaitToBeDeleted"),
             _gs("other-0", "WaitToBeDeleted", gss="other"), _gs("minecraft-3", None, state="NotReady",
                                                                 networkDisabled=True, deletionPriority=5)]
    pick = parse_selection("GameServer", "game.kruise.io/owner-gss=minecraft", "spec.opsState=WaitToBeDeleted")
    assert [g["metadata"]["name"] for g in fleet if pick.matches(g)] == ["minecraft-0", "minecraft-2"]
    # opsState unset means None, as upstream defaults it; networkDisabled unset means false.
    none = parse_selection("GameServer", None, "spec.opsState=None,spec.networkDisabled=false")
    assert [g["metadata"]["name"] for g in fleet if none.matches(g)] == ["minecraft-1"]
    odd = parse_selection("GameServer", "", "status.currentState!=Ready,spec.deletionPriority=5,gss==minecraft")
    assert [g["metadata"]["name"] for g in fleet if odd.matches(g)] == ["minecraft-3"]
    assert parse_selection("GameServer").empty and not pick.empty


def test_selection_refuses_unknown_fields() -> None:
    with pytest.raises(SelectorError, match=r"^field label not supported: spec.opsstate \(supported for GameServer: "
                                            r"metadata.name, metadata.namespace, spec.opsState"):
        parse_selection("GameServer", None, "spec.opsstate=Kill")
    with pytest.raises(SelectorError, match=r"field label not supported: status\.phase"):
        parse_selection("GameServerSet", None, "status.phase=Running")
    pods = [{"metadata": {"name": "p0"}, "status": {"phase": "Running"}},
            {"metadata": {"name": "p1"}, "status": {"phase": "Pending"}}]
    running = parse_selection("Pod", None, "status.phase=Running")
    assert [p["metadata"]["name"] for p in pods if running.matches(p)] == ["p0"]


# --- --sort-by ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "relaxed"), SORT["relaxed"])
def test_relaxed_jsonpath(text: str, relaxed: str | None) -> None:
    if relaxed is None:
        with pytest.raises(SelectorError, match="unexpected path string"):
            relaxed_jsonpath(text)
    else:
        assert relaxed_jsonpath(text) == relaxed


def test_sort_path_segments() -> None:
    assert parse_sort_path(".metadata.name").segments == ("metadata", "name")
    assert parse_sort_path("{.spec.containers[0].image}").segments == ("spec", "containers", 0, "image")
    assert parse_sort_path(r".metadata.labels.game\.kruise\.io/owner-gss").segments == (
        "metadata", "labels", "game.kruise.io/owner-gss")
    assert parse_sort_path(".metadata.labels['game.kruise.io/gs-opsState']").segments == (
        "metadata", "labels", "game.kruise.io/gs-opsState")
    with pytest.raises(SelectorError, match="only field names"):
        parse_sort_path(".items[*].metadata")


def _names(objs: list[Any]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def test_sort_by_strings_numbers_and_missing() -> None:
    objs = [_gs("b", deletionPriority=10), _gs("a", deletionPriority=9), _gs("c"), _gs("d", deletionPriority=-1)]
    assert _names(sort_objects(objs, "{.metadata.name}")) == ["a", "b", "c", "d"]
    # Numbers by value; an object without the field sorts first, as kubectl puts it.
    assert _names(sort_objects(objs, ".spec.deletionPriority")) == ["c", "d", "a", "b"]
    # Strings by bytes ("minecraft-10" < "minecraft-2"), but strings that all read as quantities by amount.
    named = [_gs("minecraft-2"), _gs("minecraft-10"), _gs("minecraft-1")]
    assert _names(sort_objects(named, "metadata.name")) == ["minecraft-1", "minecraft-10", "minecraft-2"]
    q = [_gs("x", deletionPriority="10"), _gs("y", deletionPriority="9"), _gs("z", deletionPriority="1Ki")]
    assert _names(sort_objects(q, "spec.deletionPriority")) == ["y", "x", "z"]
    # Ties keep the order they came in.
    ties = [_gs("n1", "Kill"), _gs("n0", "Allocated"), _gs("n2", "Kill")]
    assert _names(sort_objects(ties, ".spec.opsState")) == ["n0", "n1", "n2"]


def test_sort_by_errors() -> None:
    objs = [_gs("a"), _gs("b")]
    with pytest.raises(SelectorError, match=r'^couldn\'t find any field with path "\{.spec.nope\}" in the list'):
        sort_objects(objs, ".spec.nope")
    with pytest.raises(SelectorError, match="unsortable type: map"):
        sort_objects(objs, ".spec")
    with pytest.raises(SelectorError, match="unsortable type: bool"):
        sort_objects([_gs("a", networkDisabled=True), _gs("b", networkDisabled=False)], ".spec.networkDisabled")
    assert sort_objects([], ".spec.nope") == []
