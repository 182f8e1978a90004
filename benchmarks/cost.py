"""``make cost``: what the AWS paths cost per million 0.5 MB files, counted from a run.

The real definitions run in moto over generated 0.5 MB CT objects, with the real Lambda
code behind them (the test suite's seam), and the IndexFunction runs on every index-rows
object the instance passes wrote. Counted during the run, per function: invocations, their
duration, every botocore request by service and operation (S3 GET/PUT/HEAD/LIST, SQS,
Secrets Manager) with the bytes each moved, and the log bytes written; the executions'
state transitions come from their histories. moto answers S3 in microseconds, so each S3
request's time on AWS is added to the measured duration before it is billed: an assumed
first-byte latency per request plus its bytes at an assumed throughput (both stated in
the output). What moto cannot run is derived from the template and said so: the Pipe's
SQS requests and events from its batch size, the backfill's calls per ItemBatcher batch,
and the KMS requests that S3 Bucket Keys, SQS data-key reuse and Step Functions data-key
reuse leave. Prices are us-east-1 list prices (stated below); storage, transfer and the
uploader's own PUT are excluded, and so are the fixed monthly costs (custom metrics, the
Pipe's empty polls, alarms), which do not grow with files.

Writes ``docs/cost.md`` and the README's cost table (between its markers).
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

PRICES = {
    "lambda_gb_second": 0.0000133334,  # arm64
    "lambda_request": 0.20 / 1e6,
    "express_request": 1.00 / 1e6,
    "express_gb_second": 0.00001667,  # billed in 64 MB steps
    "standard_transition": 0.025 / 1000,
    "s3_put": 0.005 / 1000,  # PUT, COPY, POST, LIST
    "s3_get": 0.0004 / 1000,  # GET, HEAD
    "sqs_request": 0.40 / 1e6,
    "pipes_request": 0.40 / 1e6,
    "kms_request": 0.03 / 10000,
    "secrets_request": 0.05 / 10000,
    "logs_gb": 0.50,
}
PRICE_NOTE = (
    "us-east-1 list prices: Lambda arm64 $0.0000133334/GB-s and $0.20 per million "
    "requests; Express $1.00 per million requests and $0.00001667/GB-s; Standard $0.025 "
    "per 1,000 transitions; S3 $0.005 per 1,000 PUT/LIST and $0.0004 per 1,000 GET/HEAD; "
    "SQS and Pipes $0.40 per million; KMS $0.03 per 10,000; Secrets Manager $0.05 per "
    "10,000; logs $0.50/GB. Storage, transfer, the uploader's own PUT and fixed monthly "
    "costs (custom metrics, alarms, the Pipe's empty polls) are excluded."
)
# What moto cannot show: S3's time per request, which Lambda bills.
S3_FIRST_BYTE_MS = {"GetObject": 25.0, "HeadObject": 15.0, "PutObject": 35.0, "ListObjectsV2": 30.0}
S3_MB_PER_SECOND = 90.0
LATENCY_NOTE = (
    "S3 time per request replaces moto's own time to answer in the measured duration "
    "before billing: first byte 25 ms for GET, 15 ms for HEAD, 35 ms for PUT, 30 ms for "
    "LIST, plus the bytes moved at 90 MB/s (same-region Lambda to S3)."
)
# KMS requests left by the caches: an S3 Bucket Key is reused for many objects (AWS: up
# to 99% fewer KMS requests); SQS reuses a data key for KmsDataKeyReusePeriodSeconds and
# Step Functions for its KmsDataKeyReusePeriodSeconds; counted as one KMS request per 100
# S3 requests to a KMS bucket, and per container and period for SQS and Step Functions.
KMS_PER_S3_REQUEST = 0.01
S3_CLASS = {
    "ListObjectsV2": "s3_put",
    "PutObject": "s3_put",
    "CopyObject": "s3_put",
    "CreateMultipartUpload": "s3_put",
    "UploadPart": "s3_put",
    "CompleteMultipartUpload": "s3_put",
    "GetObject": "s3_get",
    "HeadObject": "s3_get",
}


class Counter:
    """Counts botocore calls by (service, operation) while a function runs, with S3 bytes."""

    def __init__(self) -> None:
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.index_rows_puts = 0
        self.s3_seconds = 0.0  # the assumed S3 time of the recorded requests
        self.api_seconds = 0.0  # the time spent in botocore and moto, replaced by the above
        self.recording = False

    @contextlib.contextmanager
    def active(self):  # type: ignore[no-untyped-def]
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        counter = self

        def counted(client, operation, params):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            response = original(client, operation, params)
            if counter.recording:
                # Only a function's own calls, not moto's or the harness's.
                counter.api_seconds += time.perf_counter() - started
                service = client.meta.service_model.service_name
                counter.calls[(service, operation)] += 1
                if service == "s3":
                    counter.s3_seconds += _s3_seconds(operation, params, response)
                    key = str(params.get("Key", ""))
                    if operation == "PutObject" and key.startswith("index-rows/"):
                        counter.index_rows_puts += 1
            return response

        BaseClient._make_api_call = counted  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[method-assign]


def _s3_seconds(operation: str, params: dict[str, Any], response: Any) -> float:
    moved = 0
    if operation == "GetObject":
        moved = int(response.get("ContentLength", 0))
    elif operation in ("PutObject", "UploadPart"):
        body = params.get("Body")
        if isinstance(body, bytes | bytearray):
            moved = len(body)
        elif hasattr(body, "seek") and hasattr(body, "tell"):
            here = body.tell()
            moved = body.seek(0, os.SEEK_END) - here
            body.seek(here)
    first = S3_FIRST_BYTE_MS.get(operation, 30.0) / 1000
    return first + moved / (S3_MB_PER_SECOND * 1e6)


def _template() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.integration import template

    return template.load()


class _Env:
    def setenv(self, k: str, v: str) -> None:
        os.environ[k] = v

    def delenv(self, k: str, raising: bool = True) -> None:
        os.environ.pop(k, None)


class _Function:
    """One function's invocations: count, seconds on AWS, requests, log bytes."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.counter = Counter()
        self.calls = 0
        self.seconds = 0.0
        self.log_bytes = 0

    def __call__(self, event: Any, context: Any) -> Any:
        buf = io.StringIO()
        before = self.counter.s3_seconds
        api_before = self.counter.api_seconds
        self.counter.recording = True
        started = time.perf_counter()
        try:
            with contextlib.redirect_stdout(buf):
                result = self.handler(event, context)
        finally:
            elapsed = time.perf_counter() - started
            self.counter.recording = False
        self.calls += 1
        # moto's own time to answer is not AWS's: it is replaced by the assumed S3 time.
        api = self.counter.api_seconds - api_before
        self.seconds += elapsed - api + (self.counter.s3_seconds - before)
        self.log_bytes += len(buf.getvalue().encode())
        return result

    def summary(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "seconds": self.seconds,
            "requests": {f"{svc}:{op}": n for (svc, op), n in self.counter.calls.items()},
            "log_bytes": self.log_bytes,
            "index_rows_puts": self.counter.index_rows_puts,
        }


def _measure(files: int) -> dict[str, Any]:
    import pytest  # noqa: F401 - the stack helpers use monkeypatch-style setters
    from moto import mock_aws

    from src.orchestration import lambda_handlers as lh
    from src.synthetic import write_corpus
    from tests.integration import workflow_stack as ws
    from tests.integration.lambda_seam import MOTO_CONFIG, route_lambdas

    resources = _template()["Resources"]
    memory_gb = resources["InstanceFunction"]["Properties"]["MemorySize"] / 1024
    index_memory_gb = resources["IndexFunction"]["Properties"]["MemorySize"] / 1024
    pipe_batch = resources["IngestPipe"]["Properties"]["SourceParameters"]["SqsQueueParameters"][
        "BatchSize"
    ]
    backfill_def = json.loads((ws.DEFINITIONS / "backfill.asl.json").read_text())
    map_batch = backfill_def["States"]["Backfill"]["ItemBatcher"]["MaxItemsPerBatch"]

    os.environ.update(
        AWS_ACCESS_KEY_ID="cost", AWS_SECRET_ACCESS_KEY="cost", AWS_DEFAULT_REGION="us-east-1"
    )
    os.environ["LOG_LEVEL"] = "WARNING"  # as in the template
    work = Path(tempfile.mkdtemp(prefix="medpipe-cost-"))
    corpus = write_corpus(
        work,
        seed=7,
        patients=10,
        series_per_study=1,
        instances_per_series=max(1, files // 10),
        rows=512,
        columns=512,
        include_sr=False,
        include_us=False,
    )
    paths = corpus.files[:files]
    sizes = [p.stat().st_size for p in paths]
    out: dict[str, Any] = {
        "files": len(paths),
        "mean_mb": sum(sizes) / len(sizes) / 1e6,
        "memory_gb": memory_gb,
        "index_memory_gb": index_memory_gb,
        "pipe_batch": pipe_batch,
        "map_batch": map_batch,
    }
    sequential = json.loads(json.dumps(backfill_def))
    # Children one at a time, so that each call's duration is its own (in-process threads
    # would share the GIL and inflate every duration).
    sequential["States"]["Backfill"]["MaxConcurrency"] = 1
    for path_kind in ("live", "backfill"):
        instance = _Function(lh.instance_handler)
        index = _Function(lh.index_handler)
        with mock_aws(config=MOTO_CONFIG):  # type: ignore[arg-type]
            stack = ws.build(_Env(), {"backfill": sequential})
            for i, p in enumerate(paths):
                stack["s3"].upload_file(str(p), "raw", f"in/{i:05d}.dcm")
            transitions = 0
            routes = {ws.FUNCTION: instance, ws.LARGE_FUNCTION: instance}
            with route_lambdas(routes), instance.counter.active():
                if path_kind == "live":
                    for start in range(0, len(paths), pipe_batch):
                        keys = [
                            f"in/{i:05d}.dcm"
                            for i in range(start, min(start + pipe_batch, len(paths)))
                        ]
                        batch = ws.pipe_batch("raw", keys)
                        if start == 0:
                            details = ws.run(stack, "pipeline", batch, "b0")
                            assert details["status"] == "SUCCEEDED", details
                        else:
                            # moto cannot run a second execution in-process (it fails to
                            # copy a machine that has run): the function takes the batch
                            # directly, which is all the Express machine does with it.
                            instance({"Records": batch}, None)
                else:
                    details = ws.run(
                        stack, "backfill", {"bucket": "raw", "prefix": "in/"}, "bf", timeout=600
                    )
                    assert details["status"] == "SUCCEEDED", details
                    transitions = sum(
                        1 for e in details["history"] if e["type"].endswith("StateEntered")
                    )
            # EventBridge starts the IndexFunction once per index-rows object written.
            pending = [k for k in ws.keys(stack["s3"], "operations") if k.startswith("index-rows/")]
            with index.counter.active():
                for key in pending:
                    index(ws.object_created("operations", key), None)
        out[path_kind] = {
            "instance": instance.summary(),
            "index": index.summary(),
            "parent_transitions": transitions,
        }
    return out


def _requests(r: dict[str, Any], kind: str) -> float:
    return float(
        sum(
            n
            for op, n in r["requests"].items()
            if S3_CLASS.get(op.split(":")[1]) == kind and op.startswith("s3:")
        )
    )


def _lines(m: dict[str, Any]) -> dict[str, list[tuple[str, float, float]]]:
    """(item, per-file quantity, $ per million files) for each path."""
    n = m["files"]
    per = {}
    for kind in ("live", "backfill"):
        inst, idx = m[kind]["instance"], m[kind]["index"]
        batch = m["pipe_batch"] if kind == "live" else m["map_batch"]
        aws_calls = n / batch  # one call per batch on AWS (moto: one per item for backfill)
        # One index-rows object per AWS call: moto's per-item calls wrote more, so the index
        # function's requests and time are scaled to one per AWS call.
        index_scale = aws_calls / max(1, idx["calls"])
        gb_s = inst["seconds"] / n * m["memory_gb"]
        index_gb_s = idx["seconds"] * index_scale / n * m["index_memory_gb"]
        put = _requests(inst, "s3_put") - inst["index_rows_puts"] + aws_calls
        get = _requests(inst, "s3_get")
        index_put = _requests(idx, "s3_put") * index_scale
        index_get = _requests(idx, "s3_get") * index_scale
        # The key is cached for 5 minutes per container: one request per 300 container-seconds
        # of work (the run's own count is one per run, whatever its size).
        secrets = (inst["seconds"] + idx["seconds"] * index_scale) / 300
        log_per_file = (
            inst["log_bytes"] / max(1, inst["calls"]) * aws_calls + idx["log_bytes"] * index_scale
        ) / n
        kms = (put + get + index_put + index_get) * KMS_PER_S3_REQUEST
        rows = [
            (
                "Instance function compute (GB-s, measured + S3 time)",
                gb_s,
                gb_s * PRICES["lambda_gb_second"] * 1e6,
            ),
            (
                "Instance function requests (one per batch)",
                aws_calls / n,
                aws_calls / n * PRICES["lambda_request"] * 1e6,
            ),
            ("S3 PUT/LIST by the instance function", put / n, put / n * PRICES["s3_put"] * 1e6),
            ("S3 GET/HEAD by the instance function", get / n, get / n * PRICES["s3_get"] * 1e6),
            (
                "Index function compute (GB-s, one call per batch)",
                index_gb_s,
                index_gb_s * PRICES["lambda_gb_second"] * 1e6,
            ),
            (
                "Index function requests",
                aws_calls / n,
                aws_calls / n * PRICES["lambda_request"] * 1e6,
            ),
            (
                "S3 PUT + GET by the index function",
                (index_put + index_get) / n,
                (index_put * PRICES["s3_put"] + index_get * PRICES["s3_get"]) / n * 1e6,
            ),
            (
                "KMS with Bucket Keys (1 per 100 S3 requests to a KMS bucket)",
                kms / n,
                kms / n * PRICES["kms_request"] * 1e6,
            ),
            (
                "Secrets Manager (the key, cached: 1 per 300 container-seconds)",
                secrets / n,
                secrets / n * PRICES["secrets_request"] * 1e6,
            ),
            (
                "Express requests (one per batch)",
                aws_calls / n,
                aws_calls / n * PRICES["express_request"] * 1e6,
            ),
            (
                "Express duration (64 MB x function time)",
                0.0625 * inst["seconds"] / n,
                0.0625 * inst["seconds"] / n * PRICES["express_gb_second"] * 1e6,
            ),
            (
                "Log bytes (WARNING level + EMF, per call, both functions)",
                log_per_file,
                log_per_file / 1e9 * PRICES["logs_gb"] * 1e6,
            ),
        ]
        if kind == "live":
            sqs = 1 + 2 / batch  # EventBridge SendMessage; Pipe Receive + DeleteBatch per batch
            rows += [
                ("SQS requests (1 send + 2 per batch)", sqs, sqs * PRICES["sqs_request"] * 1e6),
                ("EventBridge Pipe events", 1.0, PRICES["pipes_request"] * 1e6),
                ("EventBridge: S3 events, rules, the index-rows event", 0.0, 0.0),
            ]
        else:
            # The parent's own states are a handful per run, whatever its size: per million
            # files that is the parent's count once plus one transition per child started.
            transitions = (m[kind]["parent_transitions"] + 1e6 / batch) / 1e6
            rows += [
                (
                    "Standard transitions (one per child, parent once)",
                    transitions,
                    transitions * PRICES["standard_transition"] * 1e6,
                ),
                (
                    "S3 LIST by ItemReader (1 per 1,000 keys)",
                    1 / 1000,
                    PRICES["s3_put"] / 1000 * 1e6,
                ),
                ("ResultWriter PUTs (a few per run)", 0.0, 0.0),
            ]
        per[kind] = rows
    return per


def render(m: dict[str, Any]) -> str:
    per = _lines(m)
    out = [
        "<!-- produced by `make cost` (benchmarks/cost.py); do not edit by hand -->",
        f"Measured on {m['files']} generated CT objects of {m['mean_mb']:.2f} MB in moto, with "
        f"the function at {m['memory_gb']:.0f} GB; Pipe batches of {m['pipe_batch']}, backfill "
        f"batches of {m['map_batch']}; the index function at {m['index_memory_gb']:.0f} GB. "
        + LATENCY_NOTE
        + " "
        + PRICE_NOTE,
        "",
    ]
    for kind, title in (
        ("live", "Live path (S3 → EventBridge → SQS → Pipe → Express)"),
        ("backfill", "Backfill (Distributed Map, ItemBatcher, Express children)"),
    ):
        out += [f"**{title}**", "", "| item | per file | $ per million files |", "|---|---|---|"]
        total = 0.0
        for item, qty, dollars in per[kind]:
            out.append(f"| {item} | {qty:.4g} | ${dollars:.2f} |")
            total += dollars
        verdict = "within" if total <= 10 else "OVER"
        out += [f"| **total** | | **${total:.2f}** ({verdict} the $10 target) |", ""]
    return "\n".join(out)


def main() -> None:
    files = int(os.environ.get("MEDPIPE_COST_FILES", "100"))
    measured = _measure(files)
    table = render(measured)
    print(table)
    (ROOT / "docs" / "cost.md").write_text("# Cost per million files\n\n" + table + "\n")
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- cost:start -->", "<!-- cost:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(head + start + "\n" + table + "\n" + end + tail)


if __name__ == "__main__":
    main()
