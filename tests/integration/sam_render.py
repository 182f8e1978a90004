"""Render ``infra/template.yaml`` to plain CloudFormation with the SAM translator.

Run by the interpreter of ``tools/sam`` (aws-sam-cli's venv, which carries
``samtranslator``; its pins clash with the project's); prints the rendered template as
JSON. Local paths that ``sam build`` and ``sam deploy`` would upload are replaced by
placeholder S3 locations, which is all the translator needs.
"""

from __future__ import annotations

import json
import sys

from samcli.yamlhelper import yaml_parse
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.transform import transform


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def main(path: str) -> int:
    with open(path, encoding="utf-8") as fh:
        template = yaml_parse(fh.read())
    template.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = (
        "s3://medpipe-artifacts/code.zip"
    )
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if isinstance(props.get("DefinitionS3Location"), str):
            props["DefinitionS3Location"] = {
                "Bucket": "medpipe-artifacts",
                "Key": props["DefinitionS3Location"].rsplit("/", 1)[-1],
            }
    parameters = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
    try:
        rendered = transform(template, parameters, _NoManagedPolicies(), Parser())
    except InvalidDocumentException as exc:
        print("; ".join(str(e) for e in exc.causes), file=sys.stderr)
        return 1
    json.dump(rendered, sys.stdout, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
