"""Every EventBridge pattern and Pipe filter of the rendered stack, checked as EventBridge
checks it, then matched against sample events.

moto accepts a numeric matcher given as a string ("67108864", what a ``Ref`` renders to
inside a YAML pattern) and has no TestEventPattern; EventBridge refuses such a pattern
("Event pattern is not valid") and the stack does not create. The grammar check below
follows EventBridge's content-filtering rules (every leaf a list; ``numeric`` takes an
operator and a JSON number, in pairs; ``prefix``/``suffix`` strings; ``exists`` a
boolean; ``anything-but`` a value, list or ``prefix``), and only then are the patterns
matched (moto's matcher) against S3 "Object Created" events built from the real event in
``tests/events`` for sizes on each side of ``LargeObjectBytes``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.events.models import EventPattern

from tests.integration import workflow_stack as ws

NUMERIC_OPERATORS = {"<", "<=", "=", ">", ">="}


def _stack():  # type: ignore[no-untyped-def]
    from tests.integration.test_infra import _stack as infra_stack

    return infra_stack()


def check_pattern(node: Any, path: str = "$") -> None:
    """Raise ``AssertionError`` where EventBridge would refuse the pattern."""
    assert isinstance(node, dict) and node, f"{path}: a pattern level is a non-empty object"
    for key, value in node.items():
        where = f"{path}.{key}"
        if isinstance(value, dict):
            check_pattern(value, where)
            continue
        assert isinstance(value, list) and value, f"{where}: a leaf is a non-empty list"
        for item in value:
            if isinstance(item, dict):
                _check_matcher(item, where)
            else:
                assert item is None or isinstance(item, str | int | float), where


def _check_matcher(matcher: dict[str, Any], where: str) -> None:
    assert len(matcher) == 1, f"{where}: one matcher per object"
    ((kind, operand),) = matcher.items()
    if kind == "numeric":
        assert isinstance(operand, list) and len(operand) in (2, 4), f"{where}: numeric pairs"
        for op, number in zip(operand[::2], operand[1::2], strict=True):
            assert op in NUMERIC_OPERATORS, f"{where}: numeric operator {op!r}"
            assert isinstance(number, int | float) and not isinstance(number, bool), (
                f"{where}: numeric operand {number!r} is not a JSON number"
            )
    elif kind in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
        assert isinstance(operand, str), f"{where}: {kind} takes a string"
    elif kind == "exists":
        assert isinstance(operand, bool), f"{where}: exists takes true or false"
    elif kind == "anything-but":
        assert isinstance(operand, str | int | float | list | dict), where
    elif kind == "cidr":
        assert isinstance(operand, str), where
    else:
        raise AssertionError(f"{where}: {kind} is not an EventBridge matcher")


def _patterns(stack) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    out = {}
    for logical, rule in stack.of_type("AWS::Events::Rule").items():
        pattern = rule["Properties"]["EventPattern"]
        out[logical] = json.loads(pattern) if isinstance(pattern, str) else pattern
    for logical, pipe in stack.of_type("AWS::Pipes::Pipe").items():
        criteria = pipe["Properties"].get("SourceParameters", {}).get("FilterCriteria", {})
        for i, item in enumerate(criteria.get("Filters", [])):
            out[f"{logical}.Filter{i}"] = json.loads(item["Pattern"])
    return out


def test_every_pattern_is_one_eventbridge_accepts():
    patterns = _patterns(_stack())
    assert {"ObjectCreatedRule", "LargeObjectCreatedRule", "IndexRowsRule"} <= set(patterns)
    for name, pattern in patterns.items():
        try:
            check_pattern(pattern)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def test_the_check_refuses_a_size_rendered_as_a_string():
    with pytest.raises(AssertionError, match="not a JSON number"):
        check_pattern({"detail": {"object": {"size": [{"numeric": ["<", "67108864"]}]}}})


def _event(bucket: str, key: str, size: int) -> dict[str, Any]:
    return ws.object_created(bucket, key, size)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1, "ObjectCreatedRule"),
        (67108863, "ObjectCreatedRule"),
        (67108864, "LargeObjectCreatedRule"),
        (5 * 2**30, "LargeObjectCreatedRule"),
    ],
)
def test_each_upload_matches_exactly_one_size_rule(size, expected):
    stack = _stack()
    patterns = _patterns(stack)
    assert int(stack.parameters["LargeObjectBytes"]) == 67108864
    event = _event(stack.ref("RawBucket"), "study/1.dcm", size)
    matched = {
        n for n, p in patterns.items() if EventPattern.load(json.dumps(p)).matches_event(event)
    }
    assert matched == {expected}


def test_other_buckets_and_prefixes_match_nothing_they_should_not():
    stack = _stack()
    patterns = {n: EventPattern.load(json.dumps(p)) for n, p in _patterns(stack).items()}
    elsewhere = _event(stack.ref("ProcessedBucket"), "study/1.dcm", 10)
    assert not any(p.matches_event(elsewhere) for p in patterns.values())
    rows = _event(stack.ref("OperationsBucket"), "index-rows/date=2026-12-07/a.json", 10)
    assert {n for n, p in patterns.items() if p.matches_event(rows)} == {"IndexRowsRule"}
    other = _event(stack.ref("OperationsBucket"), "backfill-results/run/manifest.json", 10)
    assert not any(p.matches_event(other) for p in patterns.values())
