"""Side-by-side benchmarks: medpipe against the tools users would otherwise pick.

``make bench`` runs this. It generates the corpora (seeded), installs the peer tools into
a separate virtual environment (never as project dependencies), runs every tool on the
same corpus in interleaved rounds, checks that each tool really changed PatientName, and
writes ``docs/benchmarks.md`` with medians, peak RSS and ratios.

Timings are ratios measured in one run on one machine; nothing here is a pass/fail test.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench-work"
PEERS = WORK / "peers-venv"
PY = sys.executable
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CT_FILES = int(os.environ.get("BENCH_CT_FILES", "500"))
SMALL_FILES = int(os.environ.get("BENCH_SMALL_FILES", "1500"))
SLOW_PEER_FILES = int(os.environ.get("BENCH_SLOW_PEER_FILES", "100"))
BIG_BYTES = int(os.environ.get("BENCH_BIG_BYTES", str(1024 * 1024 * 1024 + 4096)))
ENV = {**os.environ, "MEDPIPE_DEID_KEY": "benchmark-key-0123456789abcdef"}

_RSS = (
    "import resource,subprocess,sys,time;t=time.perf_counter();"
    "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.PIPE);"
    "e=time.perf_counter()-t;"
    "print(e, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode);"
    "sys.stderr.write(r.stderr.decode()[-400:] if r.returncode else '')"
)


def sh(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, env=ENV, **kw)  # type: ignore[call-overload, no-any-return]


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``cmd`` and its children."""
    out = subprocess.run(
        [PY, "-c", _RSS, *cmd], capture_output=True, text=True, env=ENV, check=False
    )
    seconds, rss_kb, code = out.stdout.split()
    if code != "0":
        raise RuntimeError(f"{cmd[0]} failed: {out.stderr[-400:]}")
    return float(seconds), int(rss_kb) / 1024


def make_corpora() -> dict[str, Path]:
    sys.path.insert(0, str(ROOT))
    from src.synthetic import write_corpus

    ct = WORK / "ct"
    small = WORK / "small"
    if not ct.exists():
        per_patient = max(1, CT_FILES // 10)
        write_corpus(
            ct,
            seed=1,
            patients=10,
            series_per_study=1,
            instances_per_series=per_patient,
            rows=512,
            columns=512,
            include_sr=False,
            include_us=False,
        )
    if not small.exists():
        write_corpus(
            small,
            seed=2,
            patients=15,
            series_per_study=4,
            instances_per_series=max(1, SMALL_FILES // 60),
            rows=32,
            columns=32,
            include_sr=False,
            include_us=False,
        )
    subset = WORK / "ct-subset"
    if not subset.exists():
        subset.mkdir()
        for i, path in enumerate(sorted(ct.rglob("*.dcm"))[:SLOW_PEER_FILES]):
            shutil.copy(path, subset / f"{i:05d}.dcm")
    flat = WORK / "ct-flat"
    if not flat.exists():
        flat.mkdir()
        for i, path in enumerate(sorted(ct.rglob("*.dcm"))):
            shutil.copy(path, flat / f"{i:05d}.dcm")
    small_flat = WORK / "small-flat"
    if not small_flat.exists():
        small_flat.mkdir()
        for i, path in enumerate(sorted(small.rglob("*.dcm"))):
            shutil.copy(path, small_flat / f"{i:05d}.dcm")
    small_subset = WORK / "small-subset"
    if not small_subset.exists():
        small_subset.mkdir()
        for path in sorted(small_flat.iterdir())[: SLOW_PEER_FILES * 3]:
            shutil.copy(path, small_subset / path.name)
    return {"ct": flat, "small": small_flat, "ct-subset": subset, "small-subset": small_subset}


def make_big(path: Path) -> None:
    """A multi-frame file of BIG_BYTES pixel data, written in chunks (never held in memory)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frames = BIG_BYTES // (1024 * 1024 * 2) + 1
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["big"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["big-study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["big-series"])
    ds.PatientName = "Bigfile^Patient"
    ds.PatientID = "MRN-BIG"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 1024, 1024, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    length = frames * 1024 * 1024 * 2
    chunk = os.urandom(1 << 20)
    with open(path, "ab") as fh:
        fh.write(struct.pack("<HH", 0x7FE0, 0x0010) + b"OW\x00\x00" + struct.pack("<L", length))
        for _ in range(length // len(chunk)):
            fh.write(chunk)


def install_peers() -> None:
    if (PEERS / "bin" / "dicognito").exists():
        return
    sh([PY, "-m", "venv", str(PEERS)])
    sh(
        [
            str(PEERS / "bin" / "pip"),
            "install",
            "-q",
            "dicognito",
            "dicom-anonymizer",
            "deid",
            "pydicom>=3,<4",
        ]
    )


def gdcm_cert() -> Path:
    key, cert = WORK / "gdcm.key", WORK / "gdcm.pem"
    if not cert.exists():
        sh(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=bench",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
            ]
        )
    return cert


LOOP = """
import os, sys
from src.ingestion.deidentifier import Deidentifier
src, dst = sys.argv[1], sys.argv[2]
d = Deidentifier()
for name in sorted(os.listdir(src)):
    d.deidentify_file(os.path.join(src, name), os.path.join(dst, name))
"""
PYDICOM_RW = """
import os, sys, pydicom
src, dst = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(src)):
    ds = pydicom.dcmread(os.path.join(src, name))
    ds.PatientName = "ANON"
    ds.save_as(os.path.join(dst, name))
"""
DEID = """
import os, sys
from deid.dicom import get_files, replace_identifiers
src, dst = sys.argv[1], sys.argv[2]
replace_identifiers(dicom_files=sorted(get_files(src)), save=True, output_folder=dst)
"""


def tools(corpus: Path, out: Path) -> dict[str, list[str]]:
    peer_py = str(PEERS / "bin" / "python")
    return {
        "medpipe run -j 1": [
            str(Path(PY).with_name("medpipe")),
            "run",
            str(corpus),
            str(out),
            "-j",
            "1",
            "--no-progress",
        ],
        f"medpipe run -j {os.cpu_count()}": [
            str(Path(PY).with_name("medpipe")),
            "run",
            str(corpus),
            str(out),
            "--no-progress",
        ],
        "Deidentifier.deidentify_file loop": [PY, "-c", LOOP, str(corpus), str(out)],
        "gdcmanon (PS3.15 E.1, -e)": [
            "gdcmanon",
            "-e",
            "--certificate",
            str(gdcm_cert()),
            "-i",
            str(corpus),
            "-o",
            str(out),
            "--continue",
        ],
        "pydicom read+write loop": [PY, "-c", PYDICOM_RW, str(corpus), str(out)],
        "dicom-anonymizer": [str(PEERS / "bin" / "dicom-anonymizer"), str(corpus), str(out)],
        "dicognito": [peer_py, "-m", "dicognito", "--output-directory", str(out), str(corpus)],
        "deid (pydicom/deid)": [peer_py, "-c", DEID, str(corpus), str(out)],
        "cp -r": ["cp", "-r", str(corpus) + "/.", str(out)],
    }


SLOW = {"deid (pydicom/deid)", "dicognito", "dicom-anonymizer"}


def changed_name(out: Path) -> bool:
    import pydicom

    files = [
        p
        for p in out.rglob("*")
        if p.is_file() and not p.name.endswith((".json", ".jsonl")) and ".medpipe" not in p.parts
    ]
    for path in files[:3]:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # manifests and logs are skipped
            continue
        name = str(ds.get("PatientName", ""))
        return not any(
            last in name
            for last in ("Whitfield", "Okonkwo", "Castellano", "Lindqvist", "Abernathy")
        )
    return False


def bench_set(label: str, corpus: Path, subset: Path | None) -> list[dict]:  # type: ignore[type-arg]
    results: dict[str, list[tuple[float, float]]] = {}
    honest: dict[str, bool] = {}
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for round_no in range(ROUNDS):
        for name in tools(corpus, WORK / "x"):
            source = subset if (name in SLOW and subset is not None) else corpus
            out = WORK / "out" / f"{label}-{round_no}-{abs(hash(name))}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            cmd = tools(source, out)[name]
            try:
                seconds, rss = measure(cmd)
            except RuntimeError as exc:
                print(f"  {name}: failed ({exc})", file=sys.stderr)
                continue
            results.setdefault(name, []).append((seconds, rss))
            honest[name] = name == "cp -r" or changed_name(out)
            files = [p for p in source.rglob("*") if p.is_file()]
            counts[name] = len(files)
            sizes[name] = sum(p.stat().st_size for p in files)
            shutil.rmtree(out, ignore_errors=True)
            print(f"  {label} round {round_no + 1}: {name}: {seconds:.2f} s", file=sys.stderr)
    rows = []
    for name, runs in results.items():
        median = statistics.median(s for s, _ in runs)
        rows.append(
            {
                "tool": name,
                "files": counts[name],
                "seconds": median,
                "files_per_s": counts[name] / median,
                "mb_per_s": sizes[name] / 1e6 / median,
                "peak_rss_mb": max(r for _, r in runs),
                "changed_patient_name": honest[name],
            }
        )
    return rows


def import_times() -> dict[str, float]:
    def once(code: str) -> float:
        out = sh(
            [PY, "-c", f"import time;t=time.perf_counter();{code};print(time.perf_counter()-t)"],
            cwd=str(ROOT),
        )
        return float(out.stdout)

    base = statistics.median(once("import pydicom, boto3, pydantic") for _ in range(7))
    ours = statistics.median(once("import src.orchestration.lambda_handlers") for _ in range(7))
    return {"pydicom+boto3+pydantic": base, "lambda_handlers": ours, "ratio": ours / base}


def big_file_memory() -> dict[str, float]:
    big = WORK / "big.dcm"
    make_big(big)
    try:
        seconds, rss = measure(
            [
                PY,
                "-c",
                "import sys\nfrom src.ingestion.deidentifier import "
                "Deidentifier\nDeidentifier().deidentify_file(sys.argv[1], "
                "sys.argv[2])",
                str(big),
                str(WORK / "big-out.dcm"),
            ]
        )
        size = big.stat().st_size
    finally:
        big.unlink(missing_ok=True)
        (WORK / "big-out.dcm").unlink(missing_ok=True)
    return {"size_mb": size / 1e6, "seconds": seconds, "peak_rss_mb": rss}


def _profile(corpus: Path, setup: str, call: str, order: str) -> str:
    """cProfile of ``call`` (a statement over ``src``, ``dst`` and ``n``) on 200 files."""
    code = (
        "import cProfile,pstats,io,os,sys\nfrom src.ingestion.deidentifier import "
        f"Deidentifier\n{setup}\nsrc=sys.argv[1];dst=sys.argv[2]\n"
        "names=sorted(os.listdir(src))[:200]\npr=cProfile.Profile();pr.enable()\n"
        f"[{call} for n in names]\n"
        f"pr.disable();s=io.StringIO();pstats.Stats(pr,stream=s).sort_stats('{order}')"
        ".print_stats(18);print(s.getvalue())"
    )
    out = WORK / "profile-out"
    out.mkdir(exist_ok=True)
    text = sh([PY, "-c", code, str(corpus), str(out)], cwd=str(ROOT)).stdout
    shutil.rmtree(out, ignore_errors=True)
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[:40])


def profile_hot_path(corpus: Path) -> str:
    return _profile(
        corpus,
        "d=Deidentifier()",
        "d.deidentify_file(os.path.join(src,n),os.path.join(dst,n))",
        "cumulative",
    )


def profile_pipeline(corpus: Path) -> str:
    return _profile(
        corpus,
        "from src.instance.pipeline import InstancePipeline\np=InstancePipeline(Deidentifier())",
        "p.process(os.path.join(src,n),os.path.join(dst,n),atomic=False)",
        "tottime",
    )


def table(rows: list[dict], ref: dict[str, float]) -> str:  # type: ignore[type-arg]
    head = (
        "| tool | files | median s | files/s | MB/s | peak RSS MB | vs gdcmanon | "
        "vs fastest Python peer | vs cp | changed PatientName |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = ""
    for r in sorted(rows, key=lambda r: -r["files_per_s"]):

        def ratio(key: str, r: dict = r) -> str:  # type: ignore[type-arg]
            return f"{r['files_per_s'] / ref[key]:.2f}" if ref.get(key) else "n/a"

        body += (
            f"| {r['tool']} | {r['files']} | {r['seconds']:.2f} | {r['files_per_s']:.1f} | "
            f"{r['mb_per_s']:.1f} | {r['peak_rss_mb']:.0f} | {ratio('gdcm')} | "
            f"{ratio('python')} | {ratio('cp')} | "
            f"{'yes' if r['changed_patient_name'] else 'NO'} |\n"
        )
    return head + body


def refs(rows: list[dict]) -> dict[str, float]:  # type: ignore[type-arg]
    by = {r["tool"]: r["files_per_s"] for r in rows}
    names = ("dicom-anonymizer", "dicognito", "deid (pydicom/deid)")
    python_peers = [by[n] for n in names if n in by]
    return {
        "gdcm": by.get("gdcmanon (PS3.15 E.1, -e)", 0.0),
        "cp": by.get("cp -r", 0.0),
        "python": max(python_peers) if python_peers else 0.0,
    }


def main() -> None:
    started = time.perf_counter()
    WORK.mkdir(exist_ok=True)
    print("generating corpora ...", file=sys.stderr)
    corpora = make_corpora()
    print("installing peers ...", file=sys.stderr)
    install_peers()
    ct_rows = bench_set("ct", corpora["ct"], corpora["ct-subset"])
    small_rows = bench_set("small", corpora["small"], corpora["small-subset"])
    imports = import_times()
    big = big_file_memory()
    profile = profile_hot_path(corpora["ct"])
    pipeline_profile = profile_pipeline(corpora["ct"])
    print("network ...", file=sys.stderr)
    from benchmarks import network

    net_rates = network.run()
    net = network.section(dict(net_rates))
    print("product path (tmpfs and disk) ...", file=sys.stderr)
    from benchmarks import product_path

    product = product_path.run()
    print("clean pixel data ...", file=sys.stderr)
    from benchmarks import pixels

    pixel_results = pixels.run()
    ct_ref, small_ref = refs(ct_rows), refs(small_rows)
    ct_by = {r["tool"]: r["files_per_s"] for r in ct_rows}
    small_by = {r["tool"]: r["files_per_s"] for r in small_rows}
    loop = "Deidentifier.deidentify_file loop"
    one = "medpipe run -j 1"
    all_cores = f"medpipe run -j {os.cpu_count()}"

    def vs_gdcm(by: dict[str, float], tool: str, ref: dict[str, float]) -> float:
        return by.get(tool, 0.0) / (ref["gdcm"] or float("nan"))

    targets = [
        (f"{tool} >= {floor} x gdcmanon per core ({label})", value, value >= floor)
        for tool, floor, label, value in (
            (one, 1.5, "CT set", vs_gdcm(ct_by, one, ct_ref)),
            (loop, 1.5, "CT set", vs_gdcm(ct_by, loop, ct_ref)),
            (one, 2.5, "small files", vs_gdcm(small_by, one, small_ref)),
            (loop, 2.5, "small files", vs_gdcm(small_by, loop, small_ref)),
        )
    ]
    many = vs_gdcm(ct_by, all_cores, ct_ref)
    targets += product_path.targets(product, net_rates)
    targets += [
        (f"{all_cores} (all cores) >= 2.5 x gdcmanon (CT set)", many, many >= 2.5),
        (
            "peak RSS < 100 MB on the 1 GB multi-frame file",
            big["peak_rss_mb"],
            big["peak_rss_mb"] < 100,
        ),
        (
            "Lambda handler import <= 1.3 x pydicom+boto3+pydantic",
            imports["ratio"],
            imports["ratio"] <= 1.3,
        ),
    ]
    versions = sh(
        [
            PY,
            "-c",
            "import pydicom,boto3,pydantic;print(pydicom.__version__,"
            "boto3.__version__,pydantic.__version__)",
        ]
    ).stdout.split()
    gdcm_version = (
        subprocess.run(["gdcmanon", "--version"], capture_output=True, text=True, check=False)
        .stdout.strip()
        .splitlines()[:1]
    )
    peers = sh([str(PEERS / "bin" / "pip"), "freeze"]).stdout
    wanted = ("dicognito", "dicom-anonymizer", "dicom_anonymizer", "deid")
    peer_versions = ", ".join(
        line for line in peers.splitlines() if line.lower().startswith(wanted)
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    doc = (
        f"""# Benchmarks

Generated by `make bench` (`python -m benchmarks.run`) on {time.strftime("%Y-%m-%d")}.
Ratios measured in one run on one shared machine; medians of {ROUNDS} interleaved rounds.
They are not enforced by tests.

**Machine:** {os.cpu_count()} cores, {cpu}, Python {platform.python_version()},
pydicom {versions[0]}, boto3 {versions[1]}, pydantic {versions[2]};
gdcmanon: {gdcm_version[0] if gdcm_version else "unknown"}; peers: {peer_versions}.

**Corpora** (seeded, `src/synthetic/`): CT set of {len(list(corpora["ct"].iterdir()))} files,
512x512 16-bit (about 0.5 MB each) with PHI in the usual places, private tags and nested
sequences; a small-file set of {sum(1 for _ in corpora["small"].rglob("*.dcm"))} files of 32x32;
the slow Python peers (deid, dicognito, dicom-anonymizer) run on the first
{SLOW_PEER_FILES} CT files and are reported per file. Every tool's output is checked to have
changed PatientName (last column).

**Commands:** `medpipe run IN OUT -j 1` and without `-j` (all cores); a Python loop over
`Deidentifier().deidentify_file`; `gdcmanon -e --certificate cert.pem -i IN -o OUT`
(its PS3.15 E.1 mode); `dicom-anonymizer IN OUT`; `dicognito --output-dir OUT IN`;
`deid.dicom.replace_identifiers(...)` with its default recipe; a pydicom
`dcmread`/`save_as` loop; `cp -r`. Peak RSS is the largest process of each command.

**How it is measured:** whole-process wall time, interpreter start-up and imports
included, taken by a parent process around `subprocess.run` of each command; peak RSS
from `getrusage(RUSAGE_CHILDREN)`. Every round runs every tool once, in the same order,
and the table gives the median of {ROUNDS} rounds. Every tool reads the same corpus
(page cache warm) and writes into a fresh folder under `bench-work/out`, on the same
filesystem as the corpus; that folder is removed with `shutil.rmtree` right after the
tool's run, the same way for every tool, so that no tool pays for another's deletions.
`gdcmanon` runs on one core; `medpipe run -j 1` and the loop are one Python process.

## CT set

{table(ct_rows, ct_ref)}
## Small files (per-file overhead)

{table(small_rows, small_ref)}
## Targets

| target | measured | met |
|---|---|---|
"""
        + "".join(
            f"| {name} | {value:.2f} | {'yes' if ok else 'no'} |\n" for name, value, ok in targets
        )
        + f"""
1 GB multi-frame file: {big["size_mb"]:.0f} MB de-identified in {big["seconds"]:.1f} s with a
peak RSS of {big["peak_rss_mb"]:.0f} MB (pixel data streamed through).

Lambda handler import: {imports["lambda_handlers"] * 1000:.0f} ms against
{imports["pydicom+boto3+pydantic"] * 1000:.0f} ms for pydicom, boto3 and pydantic alone
(ratio {imports["ratio"]:.2f}).

{product_path.section(product, net_rates)}
{net}
{pixels.section(pixel_results)}
## Where the time goes

cProfile of `Deidentifier.deidentify_file` over 200 CT files (cumulative):

```
{profile}
```

cProfile of the per-instance pipeline (`InstancePipeline.process`, what each
`medpipe run` worker does per file: de-identify, validate, index row, checksum) over the
same files (internal time):

```
{pipeline_profile}
```

Total benchmark time: {time.perf_counter() - started:.0f} s.
"""
    )
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "benchmarks.md").write_text(doc)
    (WORK / "results.json").write_text(
        json.dumps(
            {
                "ct": ct_rows,
                "small": small_rows,
                "imports": imports,
                "big": big,
                "pixels": pixel_results,
                "product_path": product,
            },
            indent=1,
        )
    )
    print(doc)


if __name__ == "__main__":
    main()
