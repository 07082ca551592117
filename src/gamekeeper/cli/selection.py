"""Which objects a command acts on (names, `-l`, `--field-selector`, `--sort-by`), and bulk writes to them.

Bulk writes are all-or-nothing per object: each object's change is a merge patch carrying the resourceVersion
it was computed from, so a concurrent write makes it recompute (never overwrite); a change that would make any
matched object invalid writes nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gamekeeper.api.keys import OWNER_GSS_KEY
from gamekeeper.core.selectors import (
    DOUBLE_EQUALS,
    EQUALS,
    IN,
    Selection,
    SelectorError,
    check_field_selector,
    label_key_errors,
    label_value_errors,
    parse_field_selector,
    parse_label_selector,
    sort_objects,
)

if TYPE_CHECKING:
    from gamekeeper.runtime.images import ImageMap
    from gamekeeper.store.sqlite import SqliteState

Obj = dict[str, Any]

RESOURCE = {"GameServer": "gameserver.game.kruise.io", "GameServerSet": "gameserverset.game.kruise.io", "Pod": "pod",
            "ScaledObject": "scaledobject.keda.sh"}


class SelectionError(ValueError):
    """Bad selection or bulk-write input; the message is one line that says what to fix."""


class NothingWritten(SelectionError):
    """The change would leave some matched objects invalid, so it was written to none of them."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in problems))
        self.problems = problems


def parse_selection(kind: str, selector: str | None, field_selector: str | None) -> Selection:
    try:
        labels = parse_label_selector(selector or "")
    except SelectorError as e:
        raise SelectionError(f"--selector {selector!r}: {e}") from None
    try:
        fields = parse_field_selector(field_selector or "")
        check_field_selector(fields, kind)
    except SelectorError as e:
        raise SelectionError(f"--field-selector {field_selector!r}: {e}") from None
    return Selection(kind, labels, fields)


def no_resources(namespace: str | None) -> str:
    return f"No resources found in {namespace} namespace." if namespace else "No resources found."


def natural_key(obj: Obj) -> tuple[str, str, int]:
    """Namespace, then name with its ordinal as a number (minecraft-2 before minecraft-10)."""
    meta = obj["metadata"]
    base, _, tail = meta["name"].rpartition("-")
    return (meta["namespace"], base, int(tail)) if tail.isdigit() else (meta["namespace"], meta["name"], -1)


def select(
    state: SqliteState, kind: str, namespace: str | None, selection: Selection | None = None,
    sort_by: str | None = None,
) -> list[Obj]:
    """The matching objects in name order, or by `--sort-by` (kubectl's order: missing fields first)."""
    owner = None
    if selection is not None:
        # The store indexes the owner-gss label: an exact owner requirement narrows the read itself.
        for r in selection.labels.requirements:
            if r.key == OWNER_GSS_KEY and r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                owner = r.values[0]
    items = state.list(kind, namespace, {OWNER_GSS_KEY: owner} if owner is not None else None)
    if selection is not None and not selection.empty:
        items = [o for o in items if selection.matches(o)]
    items.sort(key=natural_key)
    if sort_by:
        try:
            items = [dict(o) for o in sort_objects(items, sort_by)]
        except SelectorError as e:
            raise SelectionError(f"--sort-by {sort_by!r}: {e}") from None
    return items


def targets(
    state: SqliteState, kind: str, namespace: str, names: Sequence[str], selector: str | None,
    field_selector: str | None, all_: bool = False,
) -> tuple[list[Obj], list[str]]:
    """The objects a write acts on: named ones (and the names not found), or every match of the selectors."""
    if names and (selector or field_selector or all_):
        raise SelectionError("name cannot be provided when a selector is specified")
    if names:
        found, missing = [], []
        for name in names:
            obj = state.get(kind, namespace, name)
            if obj is None:
                missing.append(name)
            else:
                found.append(obj)
        return found, missing
    if not (selector or field_selector or all_):
        raise SelectionError(f"resource(s) were provided, but no name was specified; name the {kind}s or select "
                             "them with -l/--selector or --field-selector")
    return select(state, kind, namespace, parse_selection(kind, selector, field_selector)), []


Validator = Callable[[Obj, Obj], list[str]]
"""Given the current object and a merge patch, what is wrong with the result (empty: it may be written)."""


def admission_validator(kind: str, images: ImageMap | None = None) -> Validator:
    """The one check of a patched result, for `patch`, `label` and `annotate` alike: what `gk apply` checks
    (cli/admission.py), so a patch can never write what apply would refuse. Status is the controllers'."""

    def validate(current: Obj, body: Obj) -> list[str]:
        from gamekeeper import admission
        from gamekeeper.api.loading import InvalidObject

        try:
            admission.admit_patch(kind, current, body, images)
        except InvalidObject as e:
            return list(e.problems)
        return []

    return validate


@dataclass
class Outcome:
    name: str
    changed: bool = False
    error: str | None = None
    patch: Obj | None = None  # what was sent, when something was


def metadata_verb(field: str, verb: str, outcome: Outcome) -> str:
    """kubectl's word for what `label`/`annotate` did: labeled, unlabeled, modified or not labeled."""
    values = ((outcome.patch or {}).get("metadata") or {}).get(field) or {} if outcome.changed else {}
    added = any(v is not None for v in values.values())
    removed = any(v is None for v in values.values())
    done = past(verb)
    if added and removed:
        return "modified"
    return done if added else f"un{done}" if removed else f"not {done}"


def past(verb: str) -> str:
    return verb + ("d" if verb.endswith("e") else "ed")


Change = Callable[[Obj], "Obj | None"]
"""Given the current object, the merge patch to send (None: nothing to change), or SelectionError."""


def apply_each(state: SqliteState, kind: str, objects: Sequence[Obj], change: Change,
               attempts: int = 20, validate: Validator | None = None) -> list[Outcome]:
    """Compute, validate and write one patch per object, each carrying the resourceVersion it was computed from.

    First every object's result is checked; if any would be invalid nothing is written (NothingWritten). Then
    each is written; one that changed meanwhile is recomputed from its new state and checked again.
    """
    from gamekeeper.ports.store import Conflict, NotFound

    check = validate or admission_validator(kind)

    def plan(obj: Obj) -> tuple[Obj | None, list[str]]:
        try:
            body = change(obj)
        except SelectionError as e:
            return None, [str(e)]
        if body is None:
            return None, []
        return body, check(obj, body)

    problems = [(obj["metadata"]["name"], e) for obj in objects for e in plan(obj)[1]]
    if problems:
        raise NothingWritten(problems)
    outcomes: list[Outcome] = []
    for obj in objects:
        meta = obj["metadata"]
        current: Obj | None = obj
        outcome = Outcome(meta["name"], error="the object kept changing; try again")
        for _ in range(attempts):
            if current is None:
                outcome.error = f'{RESOURCE[kind]} "{meta["name"]}" not found'
                break
            body, errs = plan(current)
            if errs:
                outcome.error = "; ".join(errs)
                break
            if body is None:
                outcome.error = None
                break
            try:
                result = state.patch(kind, meta["namespace"], meta["name"], body,
                                     resource_version=current["metadata"]["resourceVersion"])
            except Conflict:
                current = state.get(kind, meta["namespace"], meta["name"])
                continue
            except NotFound:
                current = None
                continue
            outcome.error, outcome.changed, outcome.patch = None, result != current, body
            break
        outcomes.append(outcome)
    return outcomes


def parse_pairs(specs: Sequence[str], what: str, validate_values: bool) -> tuple[dict[str, str], list[str]]:
    """`key=value` and `key-` arguments of `gk label` / `gk annotate`, checked as kubectl checks them."""
    add: dict[str, str] = {}
    remove: list[str] = []
    for spec in specs:
        if "=" in spec:
            key, _, value = spec.partition("=")
            if what == "label" and "=" in value:
                raise SelectionError(f"invalid label spec: {spec}")
            if validate_values and (errs := label_value_errors(value)):
                raise SelectionError(f"invalid {what} value: {spec!r}: {';'.join(errs)}")
            add[key] = value
        elif spec.endswith("-"):
            key = spec[:-1]
            remove.append(key)
        else:
            raise SelectionError(f"unknown {what} spec: {spec} (use KEY=VALUE to set, KEY- to remove)")
        if errs := label_key_errors(key):
            raise SelectionError(f"invalid {what} key {key!r}: {'; '.join(errs)}")
    if any(key in add for key in remove):
        raise SelectionError(f"can not both modify and remove {'a label' if what == 'label' else 'an annotation'} "
                             "in the same command")
    if not add and not remove:
        raise SelectionError(f"at least one {what} update is required")
    return add, remove


def metadata_change(field: str, add: dict[str, str], remove: Sequence[str], overwrite: bool,
                    notes: list[str]) -> Change:
    """The merge patch setting and removing keys of metadata.labels or metadata.annotations."""
    def change(obj: Obj) -> Obj | None:
        have = (obj.get("metadata") or {}).get(field) or {}
        if not overwrite:
            clashes = [f"'{k}' already has a value ({have[k]})" for k, v in add.items() if k in have and have[k] != v]
            if clashes:
                raise SelectionError("; ".join(clashes) + ", and --overwrite is false")
        body: dict[str, Any] = {k: v for k, v in add.items() if have.get(k) != v}
        for key in remove:
            if key in have:
                body[key] = None
            else:
                notes.append(f'{field[:-1]} "{key}" not found.')
        return {"metadata": {field: body}} if body else None
    return change
