"""``medpipe export``: a de-identified OUTPUT as volumes a training loader reads."""

from __future__ import annotations

import os

import click

from src.cli.app import _fail, friendly_errors, main


@main.command()
@click.argument("output", type=click.Path(exists=True, file_okay=False))
@click.argument("dest", type=click.Path(file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["nifti"]),
    default="nifti",
    show_default=True,
    help="Volume format: NIfTI-1, gzipped, one volume per series (dcm2niix).",
)
@friendly_errors
def export(output: str, dest: str, fmt: str) -> None:
    """Write one volume per series of OUTPUT into DEST, with dataset.csv and refused.csv.

    DEST/images/ holds <series uid>.nii.gz and its JSON sidecar; DEST/dataset.csv links
    each volume to the pseudonymised patient, study and series and to the series table
    (OUTPUT/series.parquet); DEST/refused.csv lists the series not converted and why.
    """
    from tqdm import tqdm

    from src.pipeline.export import export_nifti, read_index

    here, there = os.path.realpath(output), os.path.realpath(dest)
    if there == here or there.startswith(here + os.sep):
        _fail("DEST must be outside OUTPUT (OUTPUT is shared as it is)", 2)
    count = len({str(r.get("series", {}).get("series_instance_uid")) for r in read_index(output)})
    with tqdm(total=count, unit="series", disable=None, leave=False) as bar:
        summary = export_nifti(output, dest, progress=bar.update)
    click.echo(
        f"{summary.volumes} volume(s) from {summary.series_converted} series written to "
        f"{dest}/images ({fmt}); {summary.series_refused} series refused"
    )
    for reason, n in sorted(summary.refused.items()):
        click.echo(f"  {n} refused: {reason}")
    click.echo(f"see {dest}/dataset.csv and {dest}/refused.csv")
