"""``medpipe receive`` and ``medpipe send``: the DICOM network, over the one pipeline."""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any

import click

from src.cli.app import _build_config, _fail, _key, friendly_errors, main, profile_options

if TYPE_CHECKING:
    import ssl


def _client_tls(cert: str | None, key: str | None, ca: str | None) -> ssl.SSLContext | None:
    if not (cert or ca):
        return None
    import ssl

    from src.errors import ConfigurationError

    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        context.check_hostname = False  # DICOM peers are named by AE title and address
        if cert:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the TLS files ({type(exc).__name__})") from exc
    return context


@main.command()
@click.argument("output_uri", metavar="OUTPUT")
@click.option("--port", type=click.IntRange(0, 65535), required=True, help="TCP port to listen on.")
@click.option(
    "--ae-title",
    default="MEDPIPE",
    show_default=True,
    help="Our AE title; an association calling another is rejected.",
)
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--allow-ae", multiple=True, help="Calling AE title let in (repeat; default: any).")
@click.option(
    "--allow-host",
    multiple=True,
    help="Source address or network let in, e.g. 10.1.0.0/16 (repeat; default: any).",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Our TLS certificate (PEM); every connection is then TLS 1.2 or later.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The private key of --tls-cert (PEM).",
)
@click.option(
    "--tls-ca",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Require client certificates signed by this CA.",
)
@click.option(
    "--max-associations",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Associations at once; more are rejected (local limit exceeded).",
)
@click.option(
    "--max-pdu",
    type=click.IntRange(min=0),
    default=16382,
    show_default=True,
    help="Maximum Length we announce; a longer incoming PDU closes the connection "
    "(0: none announced, 64 MiB accepted).",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds of silence before an association is aborted; each PDU must arrive "
    "whole within it.",
)
@click.option(
    "--association-timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds from connect to a whole A-ASSOCIATE-RQ (TLS handshake included).",
)
@click.option(
    "--max-pending",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Connections not yet associated at once (they take no slot); the oldest is closed.",
)
@click.option(
    "--study-quiet",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds without a new instance after which a study is complete.",
)
@click.option("--forward", default=None, metavar="DEST", help="Send each completed study to DEST.")
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Processes de-identifying in parallel, for concurrent associations (default: all cores).",
)
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint for s3:// OUTPUT.")
@click.option("--region", "region_name", default=None, help="AWS region (default us-east-1).")
@profile_options
@friendly_errors
def receive(
    output_uri: str,
    port: int,
    ae_title: str,
    bind: str,
    allow_ae: tuple[str, ...],
    allow_host: tuple[str, ...],
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
    max_associations: int,
    max_pdu: int,
    idle_timeout: float,
    association_timeout: float,
    max_pending: int,
    study_quiet: float,
    forward: str | None,
    workers: int | None,
    endpoint_url: str | None,
    region_name: str | None,
    config_path: str | None,
    key_file: str | None,
    uid_root: str | None,
    **flags: Any,
) -> None:
    """Receive DICOM over C-STORE and de-identify each instance into OUTPUT.

    OUTPUT is a folder or s3://bucket/prefix, laid out as for `medpipe run`. The sender
    is told "success" only once the instance is stored (fsynced or uploaded). SIGTERM or
    Ctrl-C stops accepting, lets associations in flight finish and writes the reports.
    """
    from src.network.destinations import parse_destination
    from src.network.intake import Intake
    from src.network.scp import Receiver, ReceiverOptions, server_tls

    if bool(tls_cert) != bool(tls_key):
        _fail("--tls-cert and --tls-key go together")
    if tls_ca and not tls_cert:
        _fail("--tls-ca needs --tls-cert and --tls-key")
    config = _build_config(
        config_path,
        key_file,
        uid_root,
        flags,
        endpoint_url=endpoint_url,
        region_name=region_name,
        workers=workers,
    )
    key = _key(config)
    options = ReceiverOptions(
        port=port,
        bind=bind,
        ae_title=ae_title,
        allowed_aes=allow_ae,
        allowed_hosts=allow_host,
        tls=server_tls(tls_cert, tls_key, tls_ca) if tls_cert and tls_key else None,
        max_associations=max_associations,
        max_pdu=max_pdu,
        idle_seconds=idle_timeout,
        association_seconds=association_timeout,
        max_pending=max_pending,
        quiet_seconds=study_quiet,
        forward=parse_destination(forward) if forward else None,
    )
    try:
        intake = Intake(output_uri, config, key, quiet_seconds=study_quiet)
    except OSError as exc:
        from src.network.intake import error_name

        _fail(f"cannot write to OUTPUT {output_uri} ({error_name(exc)})")
        return
    receiver = Receiver(intake, options)
    # The handler only sets a flag: taking a lock in a signal handler (Event.set) can
    # deadlock when a second signal arrives while the first handler holds it.
    stopping: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _frame: stopping.append(signum))
    try:
        host, bound = receiver.start()
    except OSError as exc:
        _fail(f"cannot listen on {bind}:{port} ({exc.strerror or type(exc).__name__})")
        return
    click.echo(
        f"medpipe: receiving as {ae_title} on {host}:{bound}"
        f"{' (TLS)' if options.tls else ''} into {output_uri} (key from {key.source}); "
        "Ctrl-C to stop",
        err=True,
    )
    while not stopping:
        time.sleep(0.2)
    click.echo("medpipe: stopping: finishing associations in flight", err=True)
    written = receiver.stop()
    for line in intake.summary.lines():
        click.echo(line)
    if receiver.forwarder is not None:
        for line in receiver.forwarder.summary.lines():
            click.echo(f"forward: {line}")
    if not written:
        _fail(
            "the reports could not be written (see the log); the journal holds every "
            "instance, and the next receive or run into OUTPUT writes them",
            1,
        )


@main.command()
@click.argument("source", metavar="SOURCE", type=click.Path(exists=True, file_okay=False))
@click.argument("dest", metavar="DEST")
@click.option("--ae-title", default="MEDPIPE", show_default=True, help="Our (calling) AE title.")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Attempts in a row that make no progress before giving up (with back-off).",
)
@click.option(
    "--tls-ca",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Use TLS and trust the peer's certificate if this CA signed it.",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Our client certificate (with --tls-key).",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The private key of --tls-cert.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar (default: when stderr is a terminal).",
)
@click.option(
    "--resend",
    is_flag=True,
    help="Send every file, forgetting what DEST acknowledged before (DEST was emptied).",
)
@click.option(
    "--verify",
    is_flag=True,
    help="DICOMweb: ask DEST (QIDO-RS) which acknowledged files it still holds; "
    "send the others again.",
)
@friendly_errors
def send(
    source: str,
    dest: str,
    ae_title: str,
    retries: int,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    progress: bool | None,
    resend: bool,
    verify: bool,
) -> None:
    """Send the de-identified files under SOURCE to DEST.

    DEST is dicom://AE_TITLE@host:port (C-STORE) or an http(s):// DICOMweb base URL
    (STOW-RS). Only files with Patient Identity Removed = YES leave; quarantine/ is never
    read. What DEST acknowledged is recorded in OUTPUT/.medpipe/sent/ and not sent again
    on a re-run: --resend sends everything, --verify checks a DICOMweb DEST first.
    """
    from src.network.destinations import check_ae_title
    from src.network.scu import Association
    from src.network.send import send as send_files

    check_ae_title(ae_title)
    how = Association(
        calling_ae=ae_title,
        tls=_client_tls(tls_cert, tls_key, tls_ca),
        retries=retries,
        tls_ca_file=tls_ca,
        tls_cert_file=tls_cert,
        tls_key_file=tls_key,
    )
    if resend and verify:
        _fail("give --resend or --verify, not both", 2)
    summary = send_files(source, dest, how=how, progress=progress, resend=resend, verify=verify)
    for line in summary.lines():
        click.echo(line)
    if not summary.ok:
        _fail(f"{summary.refused + summary.failed} file(s) were not sent (see the lines above)", 1)
