"""CloudWatch metrics and logs.

For Lambda hot paths prefer :mod:`src.monitoring.metrics` (Embedded Metric Format, no API
call); this handler is for runs and tools that publish a handful of metrics.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from src.aws import error_code, make_client, translate_client_error

logger = logging.getLogger(__name__)

#: CloudWatch Logs PutLogEvents limits.
MAX_EVENTS_PER_CALL = 10_000
MAX_BYTES_PER_CALL = 1_048_576
EVENT_OVERHEAD_BYTES = 26
MAX_SPAN_MS = 24 * 3600 * 1000
VALID_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


class CloudWatchHandler:
    """Publish metrics and write log events.

    Parameters
    ----------
    region_name : str
    aws_access_key_id, aws_secret_access_key : str, optional
    endpoint_url : str, optional
    cloudwatch_client, logs_client : botocore client, optional
        Injected clients.
    session : boto3.session.Session, optional
    """

    def __init__(
        self,
        region_name: str = "us-east-1",
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        *,
        endpoint_url: str | None = None,
        cloudwatch_client: Any = None,
        logs_client: Any = None,
        session: boto3.session.Session | None = None,
    ) -> None:
        common: dict[str, Any] = {
            "region_name": region_name,
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "endpoint_url": endpoint_url,
            "session": session,
        }
        self.region_name = region_name
        self.cloudwatch_client = make_client("cloudwatch", client=cloudwatch_client, **common)
        self.logs_client = make_client("logs", client=logs_client, **common)

    def put_metric_data(
        self,
        namespace: str,
        metric_name: str,
        value: float,
        unit: str = "Count",
        dimensions: list[dict[str, str]] | None = None,
        timestamp: datetime | None = None,
    ) -> dict[str, Any]:
        """Publish one metric value.

        Parameters
        ----------
        namespace, metric_name : str
        value : float
        unit : str
            A CloudWatch unit (``Count``, ``Seconds``, ``Bytes`` ...).
        dimensions : list of dict, optional
            ``[{"Name": ..., "Value": ...}]``; never PHI.
        timestamp : datetime, optional
            Defaults to now (UTC).

        Returns
        -------
        dict
            ``{"namespace", "metric_name", "value", "unit", "timestamp"}``.
        """
        when = timestamp or datetime.now(UTC)
        datum: dict[str, Any] = {
            "MetricName": metric_name,
            "Value": float(value),
            "Unit": unit,
            "Timestamp": when,
        }
        if dimensions:
            datum["Dimensions"] = [{"Name": d["Name"], "Value": d["Value"]} for d in dimensions]
        try:
            self.cloudwatch_client.put_metric_data(Namespace=namespace, MetricData=[datum])
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "put_metric_data", namespace) from exc
        return {
            "namespace": namespace,
            "metric_name": metric_name,
            "value": float(value),
            "unit": unit,
            "timestamp": when.isoformat(),
        }

    def create_log_group(self, log_group_name: str, retention_days: int = 7) -> dict[str, str]:
        """Create a log group (an existing one is fine) and set its retention.

        Returns
        -------
        dict
            ``{"log_group_name", "retention_days", "status"}`` with status ``created`` or
            ``exists``.
        """
        if retention_days not in VALID_RETENTION_DAYS:
            raise ValueError(f"retention_days must be one of {VALID_RETENTION_DAYS}")
        status = "created"
        try:
            self.logs_client.create_log_group(logGroupName=log_group_name)
        except ClientError as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise translate_client_error(exc, "create_log_group", log_group_name) from exc
            status = "exists"
        except BotoCoreError as exc:
            raise translate_client_error(exc, "create_log_group", log_group_name) from exc
        try:
            self.logs_client.put_retention_policy(
                logGroupName=log_group_name, retentionInDays=retention_days
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "put_retention_policy", log_group_name) from exc
        return {
            "log_group_name": log_group_name,
            "retention_days": str(retention_days),
            "status": status,
        }

    def create_log_stream(self, log_group_name: str, log_stream_name: str) -> dict[str, str]:
        """Create a log stream (an existing one is fine).

        Returns
        -------
        dict
            ``{"log_group_name", "log_stream_name", "status"}``.
        """
        status = "created"
        try:
            self.logs_client.create_log_stream(
                logGroupName=log_group_name, logStreamName=log_stream_name
            )
        except ClientError as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise translate_client_error(exc, "create_log_stream", log_group_name) from exc
            status = "exists"
        except BotoCoreError as exc:
            raise translate_client_error(exc, "create_log_stream", log_group_name) from exc
        return {
            "log_group_name": log_group_name,
            "log_stream_name": log_stream_name,
            "status": status,
        }

    def put_log_events(
        self,
        log_group_name: str,
        log_stream_name: str,
        log_events: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """Write log events, sorted by timestamp and split within CloudWatch's limits.

        A call holds at most 10,000 events, 1,048,576 bytes (message bytes plus 26 per
        event) and 24 hours of timestamps.

        Returns
        -------
        dict
            ``{"events_sent", "batches", "rejected"}``; ``rejected`` sums the
            ``rejectedLogEventsInfo`` CloudWatch reported.
        """
        events: list[dict[str, Any]] = sorted(
            ({"timestamp": int(e["timestamp"]), "message": str(e["message"])} for e in log_events),
            key=lambda e: int(e["timestamp"]),
        )
        batches: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] = []
        size = 0
        for event in events:
            cost = len(event["message"].encode("utf-8")) + EVENT_OVERHEAD_BYTES
            if cost > MAX_BYTES_PER_CALL:
                raise ValueError("a single log event exceeds CloudWatch's 1 MB limit")
            if current and (
                len(current) >= MAX_EVENTS_PER_CALL
                or size + cost > MAX_BYTES_PER_CALL
                or event["timestamp"] - current[0]["timestamp"] >= MAX_SPAN_MS
            ):
                batches.append(current)
                current, size = [], 0
            current.append(event)
            size += cost
        if current:
            batches.append(current)
        rejected = 0
        for batch in batches:
            try:
                response = self.logs_client.put_log_events(
                    logGroupName=log_group_name, logStreamName=log_stream_name, logEvents=batch
                )
            except (ClientError, BotoCoreError) as exc:
                raise translate_client_error(exc, "put_log_events", log_group_name) from exc
            info = response.get("rejectedLogEventsInfo") or {}
            rejected += sum(1 for k in info if k.endswith("Index"))
        return {"events_sent": len(events), "batches": len(batches), "rejected": rejected}


def json_event(payload: dict[str, Any], timestamp_ms: int | None = None) -> dict[str, Any]:
    """Build a log event whose message is ``payload`` as JSON."""
    ts = timestamp_ms if timestamp_ms is not None else int(datetime.now(UTC).timestamp() * 1000)
    return {"timestamp": ts, "message": json.dumps(payload, sort_keys=True)}
