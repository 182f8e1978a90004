"""Every event shape the function is handed reduces to the same object references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.errors import ConfigurationError
from src.orchestration.events import object_from_event, objects_from_event

EVENTS = Path(__file__).parents[1] / "events"


def _eventbridge(key: str) -> dict:  # type: ignore[type-arg]
    text = (EVENTS / "eventbridge_object_created.json").read_text()
    return json.loads(text.replace("RAW_BUCKET", "raw").replace("OBJECT_KEY", key))


def test_s3_notification_keys_are_url_decoded():
    event = json.loads((EVENTS / "s3_put.json").read_text())
    event["Records"][0]["s3"]["object"]["key"] = "a+b%C3%BC.dcm"
    assert object_from_event(event) == ("my-bucket", "a bü.dcm")


def test_eventbridge_event_and_its_size():
    (ref,) = objects_from_event(_eventbridge("x%2By+z.dcm"))
    assert (ref.bucket, ref.key, ref.size) == ("raw", "x+y z.dcm", 1024)


def test_pipe_batch_of_sqs_messages_keeps_message_ids():
    template = (EVENTS / "pipes_sqs_batch_item.json").read_text()
    batch = []
    for i in range(3):
        message = json.loads(template.replace("MESSAGE_ID", f"m{i}"))
        message["body"] = json.dumps(_eventbridge(f"k{i}.dcm"))
        batch.append(message)
    for shape in (batch, {"Records": batch}):
        refs = objects_from_event(shape)
        assert [(r.key, r.message_id) for r in refs] == [(f"k{i}.dcm", f"m{i}") for i in range(3)]


def test_itembatcher_batch_and_wrapped_single_event():
    refs = objects_from_event(
        {"Items": [{"bucket": "raw", "key": "a"}, {"bucket": "raw", "key": "b", "size": 5}]}
    )
    assert [(r.key, r.size) for r in refs] == [("a", -1), ("b", 5)]
    assert [r.key for r in objects_from_event({"Records": _eventbridge("one.dcm")})] == ["one.dcm"]


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"bucket": "raw"},
        {"Records": [{"eventSource": "aws:sqs", "body": "nope", "messageId": "1"}]},
        5,
    ],
)
def test_events_naming_no_object_are_refused(event):
    with pytest.raises(ConfigurationError):
        objects_from_event(event)


def test_object_from_event_wants_exactly_one():
    with pytest.raises(ConfigurationError, match="one object"):
        object_from_event({"Items": [{"bucket": "r", "key": "a"}, {"bucket": "r", "key": "b"}]})
