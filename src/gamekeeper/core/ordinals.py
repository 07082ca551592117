"""Ordinals and reserved ids (spec §9): the helpers scale-in and scale-out are built from."""

from __future__ import annotations

from collections.abc import Iterable

from gamekeeper.api.kube_rules import INT32_MAX, RESERVED_IDS_MAX

IntOrString = int | str


def _atoi(text: str) -> int:
    """Go strconv.Atoi: optional sign, decimal digits, nothing else (no spaces, no underscores)."""
    body = text[1:] if text[:1] in "+-" else text
    if not body or not body.isascii() or not body.isdigit():
        raise ValueError(f"invalid integer {text!r}")
    return int(text)


def atoi_or_zero(text: str) -> int:
    try:
        return _atoi(text)
    except ValueError:
        return 0


def index_from_name(name: str) -> int:
    """The ordinal of a game server: the integer after the last '-' of its name; 0 when there is none."""
    return atoi_or_zero(name.rsplit("-", 1)[-1]) if "-" in name else 0


def parse_range(text: str) -> tuple[int, int]:
    """`"a-b"` (inclusive). Exactly two parts, each an integer after trimming, start <= end."""
    parts = text.split("-")
    if len(parts) != 2:
        raise ValueError(f"invalid range {text!r}: expected 'start-end'")
    start, end = _atoi(parts[0].strip()), _atoi(parts[1].strip())
    if start > end:
        raise ValueError(f"invalid range {text!r}: start {start} is greater than end {end}")
    return start, end


def reserve_ordinal_set(ids: Iterable[IntOrString] | None) -> set[int]:
    """Upstream GetReserveOrdinalIntSet: ints as they are, strings as ranges; any bad range empties the set."""
    out: set[int] = set()
    for item in ids or []:
        if isinstance(item, int):
            out.add(item)
            continue
        try:
            start, end = parse_range(item)
        except ValueError:
            return set()
        if end - start + 1 + len(out) > RESERVED_IDS_MAX:
            # Only reachable when the object skipped admission (kubectl on a cluster): a bad range, not a hang.
            return set()
        out.update(range(start, end + 1))
    return out


def reserve_id_problems(ids: Iterable[IntOrString] | None) -> list[str]:
    """What upstream's validating webhook meant to reject but never did (spec §8): each problem, by index."""
    problems: list[str] = []
    seen: dict[int, int] = {}
    for i, item in enumerate(ids or []):
        if isinstance(item, int):
            members = [item]
            if item < 0:
                problems.append(f"[{i}]: {item} is negative; ids are ordinals, 0 or more")
                continue
        elif len(item) > 40:
            problems.append(f"[{i}]: {item[:20]!r}… ({len(item)} characters) is not a range like \"3-7\"")
            continue
        else:
            try:
                start, end = parse_range(item)
            except ValueError as err:
                problems.append(f"[{i}]: {err} (write an integer, or a range like \"3-7\")")
                continue
            if start < 0:
                problems.append(f"[{i}]: range {item!r} starts below 0")
                continue
            if end > INT32_MAX:
                problems.append(f"[{i}]: range {item!r} ends beyond {INT32_MAX} (ordinals are int32)")
                continue
            if end - start + 1 + len(seen) > RESERVED_IDS_MAX:
                problems.append(f"[{i}]: range {item!r} reserves {end - start + 1} ids; at most {RESERVED_IDS_MAX} "
                                "ids can be reserved in all")
                continue
            members = list(range(start, end + 1))
        for ordinal in members:
            if ordinal in seen:
                problems.append(f"[{i}]: id {ordinal} is already reserved by item [{seen[ordinal]}]")
                break
            seen[ordinal] = i
    return problems


def string_to_ordinal_set(text: str, delimiter: str = ",") -> set[int]:
    """Upstream StringToOrdinalIntSet: lenient; invalid items are skipped."""
    out: set[int] = set()
    if not text:
        return out
    for item in text.split(delimiter):
        if "-" in item:
            try:
                start, end = parse_range(item)
            except ValueError:
                continue
            if end - start + 1 + len(out) > RESERVED_IDS_MAX:
                continue
            out.update(range(start, end + 1))
        else:
            try:
                out.add(_atoi(item.strip()))
            except ValueError:
                continue
    return out


def string_to_int_str_slice(text: str, delimiter: str = ",") -> list[IntOrString] | None:
    """Upstream StringToIntStrSlice: untrimmed Atoi success gives an int, otherwise the trimmed string."""
    if not text or not delimiter:
        return None
    out: list[IntOrString] = []
    for item in text.split(delimiter):
        if not item:
            continue
        try:
            out.append(_atoi(item))
        except ValueError:
            out.append(item.strip())
    return out


def _runs(ordinals: Iterable[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for n in sorted(set(ordinals)):
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def ordinal_set_to_int_str_slice(ordinals: Iterable[int]) -> list[IntOrString] | None:
    """Sorted; runs of three or more become "a-b", shorter runs stay ints; empty gives None."""
    out: list[IntOrString] = []
    for start, end in _runs(ordinals):
        if end - start >= 2:
            out.append(f"{start}-{end}")
        else:
            out.extend(range(start, end + 1))
    return out or None


def ordinal_set_to_string(ordinals: Iterable[int], delimiter: str = ",") -> str:
    return delimiter.join(str(x) for x in ordinal_set_to_int_str_slice(ordinals) or [])
