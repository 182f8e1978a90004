"""The one seam between moto's Step Functions interpreter and our Lambda code.

moto (pinned in pyproject.toml) executes ASL when ``stepfunctions.execute_state_machine``
is on, and calls Lambda through its own Lambda backend. With ``lambda.use_docker`` off,
that backend (``LambdaSimpleBackend``) only echoes the payload. :func:`route_lambdas`
replaces its ``invoke`` for the duration of a test so that each function name runs the
real module-level entry point from ``src.orchestration.lambda_handlers``, in-process.
A handler exception is reported as Lambda reports an unhandled error (the
``x-amz-function-error`` header and an ``errorType`` payload), which is what the state
machine's ``Retry`` and ``Catch`` match on.

Nothing else is replaced: S3, Secrets Manager and the interpreter are moto's own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


@contextlib.contextmanager
def route_lambdas(
    routes: dict[str, Callable[[dict[str, Any], Any], Any]],
) -> Iterator[dict[str, int]]:
    """Route moto Lambda invocations by function name; yields a call counter per name."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    calls = {name: 0 for name in routes}
    original = LambdaSimpleBackend.invoke

    def invoke(
        self: Any,
        function_name: str,
        qualifier: Any,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        name = function_name.rsplit(":", 1)[-1]
        if name not in routes:  # a qualifier or alias follows the name
            name = function_name.split(":function:")[-1].split(":")[0]
        calls[name] += 1
        event = json.loads(body or "{}")
        try:
            result = routes[name](event, None)
        except Exception as exc:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {"errorType": type(exc).__name__, "errorMessage": "handler raised"}
            ).encode()
        return json.dumps(result).encode()

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]
