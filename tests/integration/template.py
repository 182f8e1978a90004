"""Read ``infra/template.yaml`` and resolve its intrinsics against a test's resource names.

CloudFormation's short tags (``!Sub``, ``!GetAtt``, ``!Ref``, ``!If``) load as one-key
dicts; :func:`resolve` substitutes the names a moto stack uses, so a test can grant
exactly the policies the template grants.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):  # type: ignore[no-untyped-def]
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


_Loader.add_multi_constructor("!", _tag)


def load() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)  # type: ignore[no-any-return]


def resolve(node: Any, names: dict[str, str]) -> Any:
    """Replace ``Ref``/``GetAtt``/``Sub`` with ``names`` (``"RawBucket.Arn"`` → an ARN).

    Raises
    ------
    KeyError
        For a name the test did not supply (so a new reference cannot slip through).
    """
    if isinstance(node, list):
        return [resolve(n, names) for n in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return names[node["Ref"]]
    if set(node) == {"GetAtt"}:
        return names[node["GetAtt"]]
    if set(node) == {"Sub"}:
        return re.sub(r"\$\{([\w:.]+)\}", lambda m: names[m.group(1)], node["Sub"])
    return {k: resolve(v, names) for k, v in node.items()}


def role_statements(role: str, names: dict[str, str]) -> list[dict[str, Any]]:
    """Every statement of the inline policies of ``role``, resolved."""
    props = load()["Resources"][role]["Properties"]
    out: list[dict[str, Any]] = []
    for policy in props["Policies"]:
        out.extend(resolve(policy["PolicyDocument"]["Statement"], names))
    return out
