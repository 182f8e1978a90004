"""The ``medpipe`` command line: a thin layer over the pipeline, the core and the handlers.

:mod:`src.cli.app` holds the group and the shared error handling; the commands live in
:mod:`src.cli.commands` (run, deidentify), :mod:`src.cli.explain`, :mod:`src.cli.export`
and :mod:`src.cli.tools`
(the rest), imported
here so that ``src.cli:main`` has them all.
"""

from src.cli import commands, explain, export, network, tools  # noqa: F401 - importing registers them
from src.cli.app import main

__all__ = ["main"]
