from __future__ import annotations

import io
import json
import logging
import re

from src.errors import (
    AccessDeniedError,
    InvalidDICOMError,
    ObjectNotFoundError,
    ThrottlingError,
    error_response,
)
from src.monitoring.logs import LOG_KEYS, configure_logging


def _capture() -> io.StringIO:
    stream = io.StringIO()
    configure_logging(logging.DEBUG, stream=stream)
    return stream


def test_log_lines_have_exactly_the_documented_keys():
    stream = _capture()
    logging.getLogger("src.storage.s3_handler").info(
        "File uploaded successfully",
        extra={
            "operation": "upload_file",
            "status": "completed",
            "details": {"size": 3},
            "bucket": "b",
        },
    )
    record = json.loads(stream.getvalue().splitlines()[-1])
    assert tuple(record) == LOG_KEYS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    assert record["level"] == "INFO"
    assert record["logger"] == "src.storage.s3_handler"
    assert record["module"] == "test_logging_and_errors"
    assert record["function"] == "test_log_lines_have_exactly_the_documented_keys"
    assert isinstance(record["line"], int)
    assert record["operation"] == "upload_file"
    assert record["status"] == "completed"
    assert record["details"] == {"size": 3, "bucket": "b"}


def test_defaults_and_exceptions_carry_no_text():
    stream = _capture()
    try:
        raise ValueError("Patient Jane Doe is broken")
    except ValueError:
        logging.getLogger("src.x").exception("failed")
    line = stream.getvalue().splitlines()[-1]
    record = json.loads(line)
    assert record["operation"] == "test_defaults_and_exceptions_carry_no_text"
    assert record["status"] is None
    assert record["details"] == {"exception_type": "ValueError"}
    assert "Jane" not in line


def test_error_response_shapes():
    resp = error_response(InvalidDICOMError("a.dcm", "empty file"))
    assert resp == {
        "statusCode": 400,
        "error": "InvalidDICOMError",
        "message": "a.dcm: not a readable DICOM file (empty file)",
        "details": {"source": "a.dcm", "reason": "empty file"},
    }
    assert error_response(ObjectNotFoundError("gone"))["statusCode"] == 404
    assert error_response(AccessDeniedError("no"))["statusCode"] == 403
    assert error_response(ThrottlingError("slow"))["statusCode"] == 503
    generic = error_response(RuntimeError("value 12345 leaked"))
    assert generic["statusCode"] == 500
    assert "12345" not in generic["message"]
    assert error_response(ValueError("x"), status_code=400, details={"k": 1})["details"] == {"k": 1}


def test_cli_error_line_hides_values_quoted_by_pydicom():
    from pydicom.valuerep import IS

    from src.cli.app import _safe_message

    try:
        IS("Whitfield")
    except ValueError as exc:
        message = _safe_message(exc)
    assert "Whitfield" not in message and "ValueError" in message
    assert _safe_message(ValueError("expected s3://bucket/key")) == "expected s3://bucket/key"
