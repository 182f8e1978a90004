"""What ``medpipe run`` reads: INPUT and OUTPUT checked before any work, every input found.

Discovery skips OUTPUT when it lies inside INPUT, and every other folder below INPUT that
holds a medpipe OUTPUT (its ``.medpipe/`` state folder): those files, index and journal
are de-identified already, and reading them again would de-identify them twice or
quarantine them. An INPUT that is itself an OUTPUT is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from src.errors import ConfigurationError
from src.pipeline.archives import archive_limits
from src.pipeline.sources import InputItem, holds_output, iter_local, iter_store
from src.records.state import STATE_DIR
from src.settings.config import RunConfig
from src.settings.locations import Location, parse_location
from src.storage.store import Store, open_store


def open_location(location: Location, config: RunConfig) -> Store:
    """The store of a parsed INPUT or OUTPUT, with the run's region and endpoint."""
    return open_store(
        location.raw if location.is_s3 else location.path,
        region_name=config.region_name,
        endpoint_url=config.endpoint_url,
    )


def discover(
    input_loc: Location,
    output_loc: Location,
    config: RunConfig,
    outputs: list[str] | None = None,
) -> Iterator[InputItem]:
    """Every input under INPUT, sorted, excluding OUTPUT when it lies inside INPUT and
    every other medpipe OUTPUT below it (appended to ``outputs``)."""
    if input_loc.is_s3:
        exclude = None
        if output_loc.is_s3 and output_loc.bucket == input_loc.bucket:
            exclude = output_loc.prefix or None
        yield from iter_store(open_location(input_loc, config), input_loc.bucket, exclude)
        return
    if not os.path.exists(input_loc.path):
        raise ConfigurationError(f"INPUT {input_loc.raw} does not exist")
    exclude = None if output_loc.is_s3 else output_loc.path
    yield from iter_local(input_loc.path, exclude, archive_limits(config), outputs)


def check_locations(input_uri: str, output_uri: str) -> tuple[Location, Location]:
    """Parse INPUT and OUTPUT and refuse impossible combinations before any work starts."""
    try:
        input_loc, output_loc = parse_location(input_uri), parse_location(output_uri)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    if not input_loc.is_s3 and not os.path.exists(input_loc.path):
        raise ConfigurationError(f"INPUT {input_uri} does not exist")
    if not input_loc.is_s3 and os.path.isdir(input_loc.path) and holds_output(input_loc.path):
        raise ConfigurationError(
            f"INPUT {input_uri} is a medpipe OUTPUT (it holds {STATE_DIR}/): its files are "
            "de-identified already; give the folder of the originals"
        )
    if not output_loc.is_s3:
        if os.path.isfile(output_loc.path):
            raise ConfigurationError(f"OUTPUT {output_uri} is a file, not a folder")
        if not input_loc.is_s3 and (
            os.path.realpath(output_loc.path) == os.path.realpath(input_loc.path)
        ):
            raise ConfigurationError("OUTPUT must differ from INPUT")
    return input_loc, output_loc


__all__ = ["check_locations", "discover", "open_location"]
