"""``make cost``: what the AWS paths cost per million 0.5 MB files, from a moto run.

The real definitions run in moto over a batch of generated 0.5 MB CT objects, with the
real Lambda code behind them (the test suite's seam). Counted during the run: Lambda
invocations and their duration, S3 requests by operation (every botocore call the
function makes), state transitions (from the execution histories) and log bytes the
function writes. Derived from the template rather than run (moto has no Pipes or
EventBridge delivery, and does not run ItemBatcher): SQS requests and Pipe events per
object from the Pipe's batch size, and the backfill's Lambda calls, Express children and
parent transitions from ItemBatcher's batch size. Prices are us-east-1 list prices
(stated below); storage, transfer and the uploader's own PUT are excluded.

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
    "logs_gb": 0.50,
}
PRICE_NOTE = (
    "us-east-1 list prices: Lambda arm64 $0.0000133334/GB-s and $0.20 per million "
    "requests; Express $1.00 per million requests and $0.00001667/GB-s; Standard $0.025 "
    "per 1,000 transitions; S3 $0.005 per 1,000 PUT/LIST and $0.0004 per 1,000 GET/HEAD; "
    "SQS and Pipes $0.40 per million; logs $0.50/GB. KMS (Bucket Keys, queue data-key "
    "reuse) and Secrets Manager (cached 5 min) add well under $0.01 per million. Storage, "
    "transfer and the uploader's own PUT are excluded."
)
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
    """Counts botocore calls by (service, operation) while active."""

    def __init__(self) -> None:
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.index_puts = 0
        self.recording = False

    @contextlib.contextmanager
    def active(self):  # type: ignore[no-untyped-def]
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        counter = self

        def counted(client, operation, params):  # type: ignore[no-untyped-def]
            if counter.recording:  # only the function's own calls, not moto's or the harness's
                counter.calls[(client.meta.service_model.service_name, operation)] += 1
                if operation == "PutObject" and str(params.get("Key", "")).startswith("index/"):
                    counter.index_puts += 1
            return original(client, operation, params)

        BaseClient._make_api_call = counted  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[method-assign]


def _template() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.integration import template

    return template.load()


def _measure(files: int) -> dict[str, Any]:
    import pytest  # noqa: F401 - the stack helpers use monkeypatch-style setters
    from moto import mock_aws

    from src.orchestration import lambda_handlers as lh
    from src.synthetic import write_corpus
    from tests.integration import workflow_stack as ws
    from tests.integration.lambda_seam import MOTO_CONFIG, route_lambdas

    resources = _template()["Resources"]
    memory_gb = resources["InstanceFunction"]["Properties"]["MemorySize"] / 1024
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
    per_patient = max(1, files // 10)
    corpus = write_corpus(
        work,
        seed=7,
        patients=10,
        series_per_study=1,
        instances_per_series=per_patient,
        rows=512,
        columns=512,
        include_sr=False,
        include_us=False,
    )
    paths = corpus.files[:files]
    sizes = [p.stat().st_size for p in paths]

    class _Env:
        def setenv(self, k: str, v: str) -> None:
            os.environ[k] = v

        def delenv(self, k: str, raising: bool = True) -> None:
            os.environ.pop(k, None)

    out: dict[str, Any] = {
        "files": len(paths),
        "mean_mb": sum(sizes) / len(sizes) / 1e6,
        "memory_gb": memory_gb,
        "pipe_batch": pipe_batch,
        "map_batch": map_batch,
    }
    sequential = json.loads(json.dumps(backfill_def))
    # Children one at a time, so that each call's duration is its own (in-process threads
    # would share the GIL and inflate every duration).
    sequential["States"]["Backfill"]["MaxConcurrency"] = 1
    for path_kind in ("live", "backfill"):
        counter = Counter()
        with mock_aws(config=MOTO_CONFIG):  # type: ignore[arg-type]
            stack = ws.build(_Env(), {"backfill": sequential})
            for i, p in enumerate(paths):
                stack["s3"].upload_file(str(p), "raw", f"in/{i:05d}.dcm")
            durations: list[float] = []
            log_bytes = [0]

            def timed(
                event: Any,
                context: Any,
                counter: Counter = counter,
                durations: list[float] = durations,
                log_bytes: list[int] = log_bytes,
            ) -> Any:
                buf = io.StringIO()
                counter.recording = True
                started = time.perf_counter()
                try:
                    with contextlib.redirect_stdout(buf):
                        result = lh.instance_handler(event, context)
                finally:
                    durations.append(time.perf_counter() - started)
                    counter.recording = False
                log_bytes[0] += len(buf.getvalue().encode())
                return result

            transitions = 0
            executions = 0
            with route_lambdas({ws.FUNCTION: timed}) as calls, counter.active():
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
                            timed({"Records": batch}, None)
                            calls[ws.FUNCTION] += 1
                        executions += 1
                else:
                    details = ws.run(
                        stack, "backfill", {"bucket": "raw", "prefix": "in/"}, "bf", timeout=600
                    )
                    assert details["status"] == "SUCCEEDED", details
                    transitions = sum(
                        1 for e in details["history"] if e["type"].endswith("StateEntered")
                    )
            s3_calls = {op: n for (svc, op), n in counter.calls.items() if svc == "s3"}
            # Only the function's own S3 calls count (not the harness's uploads/listing).
            out[path_kind] = {
                "lambda_calls": calls[ws.FUNCTION],
                "lambda_seconds": sum(durations),
                "s3": s3_calls,
                "executions": executions,
                "parent_transitions": transitions,
                "log_bytes": log_bytes[0],
                "index_puts": counter.index_puts,
            }
    return out


def _lines(m: dict[str, Any]) -> dict[str, list[tuple[str, float, float]]]:
    """(item, per-file quantity, $ per million files) for each path."""
    n = m["files"]
    per = {}
    for kind in ("live", "backfill"):
        r = m[kind]
        batch = m["pipe_batch"] if kind == "live" else m["map_batch"]
        lambda_calls = n / batch  # one call per batch on AWS (moto: per item for backfill)
        gb_s = r["lambda_seconds"] / n * m["memory_gb"]
        s3_put = sum(v for k, v in r["s3"].items() if S3_CLASS.get(k) == "s3_put")
        # moto runs one call per item where AWS runs one per batch: one index file per call.
        s3_put += lambda_calls - r["index_puts"]
        # Log lines are per call (one EMF line, warnings): scale from moto's calls to AWS's.
        log_per_file = r["log_bytes"] / r["lambda_calls"] * lambda_calls / n
        s3_get = sum(v for k, v in r["s3"].items() if S3_CLASS.get(k) == "s3_get")
        rows = [
            ("Lambda compute (GB-s, measured here)", gb_s, gb_s * PRICES["lambda_gb_second"] * 1e6),
            (
                "Lambda requests (one per batch)",
                1 / batch,
                lambda_calls / n * PRICES["lambda_request"] * 1e6,
            ),
            ("S3 PUT/LIST by the function", s3_put / n, s3_put / n * PRICES["s3_put"] * 1e6),
            ("S3 GET/HEAD by the function", s3_get / n, s3_get / n * PRICES["s3_get"] * 1e6),
            (
                "Express requests (one per batch)",
                1 / batch,
                PRICES["express_request"] / batch * 1e6,
            ),
            (
                "Express duration (64 MB x function time)",
                0.0625 * r["lambda_seconds"] / n,
                0.0625 * r["lambda_seconds"] / n * PRICES["express_gb_second"] * 1e6,
            ),
            (
                "Function log bytes (WARNING level + EMF, per call)",
                log_per_file,
                log_per_file / 1e9 * PRICES["logs_gb"] * 1e6,
            ),
        ]
        if kind == "live":
            sqs = 1 + 2 / batch  # EventBridge SendMessage; Pipe Receive + DeleteBatch per batch
            rows += [
                ("SQS requests (1 send + 2 per batch)", sqs, sqs * PRICES["sqs_request"] * 1e6),
                ("EventBridge Pipe events", 1.0, PRICES["pipes_request"] * 1e6),
                ("EventBridge S3 events and rule", 0.0, 0.0),
            ]
        else:
            # The parent's own states are a handful per run, whatever its size: per million
            # files that is the parent's count once plus one transition per child started.
            transitions = (r["parent_transitions"] + 1e6 / batch) / 1e6
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
        f"batches of {m['map_batch']}. " + PRICE_NOTE,
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
        out += [f"| **total** | | **${total:.2f}** |", ""]
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
