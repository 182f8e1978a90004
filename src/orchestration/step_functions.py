"""Step Functions: create state machines, start and inspect executions.

Definitions are ASL JSON files with ``${Name}`` placeholders (see ``definitions/``),
filled by :meth:`StepFunctionsHandler.substitute_variables`.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from src.aws import make_client, translate_client_error
from src.errors import ConfigurationError

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
EXECUTION_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")


def _json_or_none(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class StepFunctionsHandler:
    """Manage state machines and executions.

    Parameters
    ----------
    region_name : str
    aws_access_key_id, aws_secret_access_key : str, optional
    endpoint_url : str, optional
    sfn_client : botocore client, optional
    session : boto3.session.Session, optional
    """

    def __init__(
        self,
        region_name: str = "us-east-1",
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        *,
        endpoint_url: str | None = None,
        sfn_client: Any = None,
        session: boto3.session.Session | None = None,
    ) -> None:
        self.region_name = region_name
        self.sfn_client = make_client(
            "stepfunctions",
            region_name=region_name,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            endpoint_url=endpoint_url,
            client=sfn_client,
            session=session,
        )

    def create_state_machine(
        self,
        name: str,
        definition: dict[str, Any],
        role_arn: str,
        logging_config: dict[str, Any] | None = None,
        tags: list[dict[str, str]] | None = None,
        *,
        state_machine_type: str = "STANDARD",
    ) -> dict[str, Any]:
        """Create a state machine.

        Returns
        -------
        dict
            ``{"state_machine_arn", "creation_date", "name"}``.
        """
        unresolved = _PLACEHOLDER.findall(json.dumps(definition))
        if unresolved:
            raise ConfigurationError(
                "definition still holds placeholders: " + ", ".join(sorted(set(unresolved)))
            )
        kwargs: dict[str, Any] = {
            "name": name,
            "definition": json.dumps(definition),
            "roleArn": role_arn,
            "type": state_machine_type,
        }
        if logging_config:
            kwargs["loggingConfiguration"] = logging_config
        if tags:
            kwargs["tags"] = [
                {"key": t.get("key", t.get("Key", "")), "value": t.get("value", t.get("Value", ""))}
                for t in tags
            ]
        try:
            response = self.sfn_client.create_state_machine(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "create_state_machine", name) from exc
        return {
            "state_machine_arn": response["stateMachineArn"],
            "creation_date": response.get("creationDate"),
            "name": name,
        }

    def start_execution(
        self,
        state_machine_arn: str,
        execution_input: dict[str, Any],
        execution_name: str | None = None,
    ) -> dict[str, Any]:
        """Start an execution; a name is generated when none is given.

        Returns
        -------
        dict
            ``{"execution_arn", "start_date", "name"}``.
        """
        name = execution_name or f"exec-{uuid.uuid4().hex}"
        try:
            response = self.sfn_client.start_execution(
                stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input)
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "start_execution", state_machine_arn) from exc
        return {
            "execution_arn": response["executionArn"],
            "start_date": response.get("startDate"),
            "name": name,
        }

    def describe_execution(self, execution_arn: str) -> dict[str, Any]:
        """Execution details.

        Returns
        -------
        dict
            ``{"execution_arn", "state_machine_arn", "name", "status", "start_date",
            "stop_date", "input", "output", "error", "cause"}``; input and output are
            parsed JSON where possible, error and cause None unless it failed.
        """
        try:
            r = self.sfn_client.describe_execution(executionArn=execution_arn)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "describe_execution", execution_arn) from exc
        return {
            "execution_arn": r["executionArn"],
            "state_machine_arn": r.get("stateMachineArn"),
            "name": r.get("name"),
            "status": r["status"],
            "start_date": r.get("startDate"),
            "stop_date": r.get("stopDate"),
            "input": _json_or_none(r.get("input")),
            "output": _json_or_none(r.get("output")),
            "error": r.get("error"),
            "cause": r.get("cause"),
        }

    def list_executions(
        self,
        state_machine_arn: str,
        status_filter: str | None = None,
        max_results: int = 100,
    ) -> list[dict[str, Any]]:
        """List executions (all pages, up to ``max_results``), optionally by status.

        Returns
        -------
        list of dict
            ``{"execution_arn", "name", "status", "start_date", "stop_date"}``.
        """
        if status_filter is not None and status_filter not in EXECUTION_STATUSES:
            raise ValueError(f"status_filter must be one of {', '.join(EXECUTION_STATUSES)}")
        kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn}
        if status_filter:
            kwargs["statusFilter"] = status_filter
        out: list[dict[str, Any]] = []
        try:
            paginator = self.sfn_client.get_paginator("list_executions")
            for page in paginator.paginate(
                **kwargs, PaginationConfig={"PageSize": min(1000, max(1, max_results))}
            ):
                for e in page.get("executions", []):
                    if len(out) >= max_results:
                        return out
                    out.append(
                        {
                            "execution_arn": e["executionArn"],
                            "name": e.get("name"),
                            "status": e["status"],
                            "start_date": e.get("startDate"),
                            "stop_date": e.get("stopDate"),
                        }
                    )
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "list_executions", state_machine_arn) from exc
        return out

    @staticmethod
    def load_state_machine_definition(file_path: str) -> dict[str, Any]:
        """Load an ASL definition from a JSON file."""
        try:
            with open(file_path, encoding="utf-8") as fh:
                data: dict[str, Any] = json.load(fh)
        except FileNotFoundError as exc:
            raise ConfigurationError(f"definition file {file_path} does not exist") from exc
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"definition file {file_path} is not JSON: {exc}") from exc
        return data

    def substitute_variables(
        self, definition: dict[str, Any], variables: dict[str, str]
    ) -> dict[str, Any]:
        """Replace ``${Name}`` placeholders anywhere in the definition (keys and values).

        Raises
        ------
        ConfigurationError
            If a placeholder has no value in ``variables``.
        """
        missing: set[str] = set()

        def fill(text: str) -> str:
            def one(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in variables:
                    missing.add(name)
                    return match.group(0)
                return str(variables[name])

            return _PLACEHOLDER.sub(one, text)

        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                return {fill(k): walk(v) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v) for v in node]
            if isinstance(node, str):
                return fill(node)
            return node

        result: dict[str, Any] = walk(definition)
        if missing:
            raise ConfigurationError("unknown placeholders: " + ", ".join(sorted(missing)))
        return result
