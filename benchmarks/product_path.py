"""What users run, measured as they see it: ``medpipe run`` beside ``gdcmanon``.

Per-core steady state is the *slope*: the CPU seconds (user + system, of the command and
its children) per file between a small and a large set of the same files, so that
start-up and the end-of-run reports fall out of it; start-up is measured on its own
(one file, and an empty folder). Every command runs on tmpfs (``/dev/shm``: the disk is
not the limit) and on the checkout's disk, ``-j 1`` and all cores, in interleaved rounds;
the table gives medians. Wall time stands beside CPU time: on 2 shared cores a wall
figure alone says more about the neighbours than about the code.

Before the timings count, the outputs of ``-j 1`` and all cores are compared digest by
digest (the same bytes for any number of workers).

Run with ``make bench`` (:mod:`benchmarks.run` calls :func:`run`), or alone:
``python -m benchmarks.product_path``. Sizes: ``BENCH_CT_FILES`` (500) and
``BENCH_CT_LARGE`` (5,000) CT files, ``BENCH_SMALL_FILES`` (1,500) small files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench-work"
PY = sys.executable
MEDPIPE = str(Path(PY).with_name("medpipe"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CT_SMALL = int(os.environ.get("BENCH_CT_FILES", "500"))
CT_LARGE = int(os.environ.get("BENCH_CT_LARGE", "5000"))
SMALL = int(os.environ.get("BENCH_SMALL_FILES", "1500"))
ENV = {**os.environ, "MEDPIPE_DEID_KEY": "benchmark-key-0123456789abcdef"}
CORES = os.cpu_count() or 1
LOOP = """
import os, sys
from src.ingestion.deidentifier import Deidentifier
src, dst = sys.argv[1], sys.argv[2]
d = Deidentifier()
for name in sorted(os.listdir(src)):
    d.deidentify_file(os.path.join(src, name), os.path.join(dst, name))
"""


def _corpus(folder: Path, count: int, *, ct: bool) -> Path:
    """``count`` files, flat, generated once (seeded) and copied to where they are read."""
    if folder.exists() and sum(1 for _ in folder.iterdir()) == count:
        return folder
    sys.path.insert(0, str(ROOT))
    from src.synthetic import write_corpus

    shutil.rmtree(folder, ignore_errors=True)
    raw = folder.with_name(folder.name + "-gen")
    shutil.rmtree(raw, ignore_errors=True)
    patients = 10 if ct else 15
    series = 1 if ct else 4
    write_corpus(
        raw,
        seed=1 if ct else 2,
        patients=patients,
        series_per_study=series,
        instances_per_series=max(1, count // (patients * series)),
        rows=512 if ct else 32,
        columns=512 if ct else 32,
        include_sr=False,
        include_us=False,
    )
    folder.mkdir(parents=True)
    for i, path in enumerate(sorted(raw.rglob("*.dcm"))[:count]):
        os.rename(path, folder / f"{i:05d}.dcm")
    shutil.rmtree(raw, ignore_errors=True)
    return folder


def _subset(corpus: Path, count: int) -> Path:
    """The first ``count`` files of ``corpus``, hard-linked (the same bytes)."""
    folder = corpus.with_name(f"{corpus.name}-first{count}")
    if not folder.exists():
        folder.mkdir()
        for path in sorted(corpus.iterdir())[:count]:
            os.link(path, folder / path.name)
    return folder


def _commands(corpus: Path, out: Path) -> dict[str, list[str]]:
    cert = WORK / "gdcm.pem"
    return {
        "medpipe run -j 1": [MEDPIPE, "run", str(corpus), str(out), "-j", "1", "--no-progress"],
        f"medpipe run -j {CORES}": [MEDPIPE, "run", str(corpus), str(out), "--no-progress"],
        "Deidentifier loop": [PY, "-c", LOOP, str(corpus), str(out)],
        "gdcmanon -e": [
            "gdcmanon",
            "-e",
            "--certificate",
            str(cert),
            "-i",
            str(corpus),
            "-o",
            str(out),
            "--continue",
        ],
    }


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the command and its children)."""
    code = (
        "import resource,subprocess,sys,time\n"
        "t=time.perf_counter();r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,"
        "stderr=subprocess.PIPE)\nw=time.perf_counter()-t\n"
        "u=resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(w,u.ru_utime+u.ru_stime,r.returncode)\n"
        "sys.stderr.write(r.stderr.decode()[-300:] if r.returncode else '')"
    )
    done = subprocess.run(
        [PY, "-c", code, *cmd], capture_output=True, text=True, env=ENV, cwd=ROOT, check=False
    )
    wall, cpu, rc = done.stdout.split()
    if rc not in ("0",) and not (cmd[0] == MEDPIPE and rc == "2"):
        raise RuntimeError(f"{cmd[0]} exited {rc}: {done.stderr[-300:]}")
    return float(wall), float(cpu)


def _digests(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
        for p in out.rglob("*.dcm")
        if ".medpipe" not in p.parts and "quarantine" not in p.parts
    }


def _same_for_any_workers(corpus: Path, scratch: Path) -> bool:
    outs = []
    for name in ("medpipe run -j 1", f"medpipe run -j {CORES}"):
        out = scratch / f"check-{len(outs)}"
        shutil.rmtree(out, ignore_errors=True)
        _timed(_commands(corpus, out)[name])
        outs.append(_digests(out))
        shutil.rmtree(out, ignore_errors=True)
    return bool(outs[0]) and outs[0] == outs[1]


def _start_up(scratch: Path, one: Path) -> dict[str, list[float]]:
    empty = scratch / "empty"
    empty.mkdir(exist_ok=True)
    out = scratch / "start-out"
    cases = {
        "empty INPUT": [MEDPIPE, "run", str(empty), str(out), "--no-progress"],
        "one file": [MEDPIPE, "run", str(one), str(out), "--no-progress"],
        "re-run, nothing to do": [MEDPIPE, "run", str(one), str(out), "--no-progress"],
    }
    times: dict[str, list[float]] = {}
    for _ in range(max(3, ROUNDS)):
        shutil.rmtree(out, ignore_errors=True)
        for label, cmd in cases.items():
            wall, cpu = _timed(cmd)
            times.setdefault(f"{label} wall", []).append(wall)
            times.setdefault(f"{label} cpu", []).append(cpu)
    shutil.rmtree(out, ignore_errors=True)
    return times


def _on(where: str, base: Path) -> dict[str, object]:
    """Every command on the small and large sets under ``base``, interleaved rounds."""
    scratch = base / "product-path"
    scratch.mkdir(parents=True, exist_ok=True)
    ct = _corpus(scratch / "ct", CT_LARGE, ct=True)
    small = _corpus(scratch / "small", SMALL, ct=False)
    sets = {"ct": (_subset(ct, CT_SMALL), ct), "small": (_subset(small, SMALL // 5), small)}
    result: dict[str, object] = {"where": where}
    for label, (few, many) in sets.items():
        n_few = sum(1 for _ in few.iterdir())
        n_many = sum(1 for _ in many.iterdir())
        runs: dict[str, dict[str, list[float]]] = {}
        for _ in range(ROUNDS):
            for size, corpus in (("few", few), ("many", many)):
                for name in _commands(corpus, scratch / "x"):
                    out = scratch / "out"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    wall, cpu = _timed(_commands(corpus, out)[name])
                    shutil.rmtree(out, ignore_errors=True)
                    entry = runs.setdefault(name, {})
                    entry.setdefault(f"{size} wall", []).append(wall)
                    entry.setdefault(f"{size} cpu", []).append(cpu)
                    print(f"  {where} {label} {size} {name}: {wall:.2f} s", file=sys.stderr)
        rows = {}
        for name, t in runs.items():
            med = {k: statistics.median(v) for k, v in t.items()}
            span = n_many - n_few
            rows[name] = {
                "cpu_us_per_file": (med["many cpu"] - med["few cpu"]) / span * 1e6,
                "wall_us_per_file": (med["many wall"] - med["few wall"]) / span * 1e6,
                "fixed_cpu_s": med["few cpu"] - n_few * (med["many cpu"] - med["few cpu"]) / span,
                "many_wall_s": med["many wall"],
                "many_cpu_s": med["many cpu"],
            }
        result[label] = {"files": [n_few, n_many], "rows": rows}
    result["identical_for_any_workers"] = _same_for_any_workers(sets["ct"][0], scratch)
    result["start_up"] = {
        k: statistics.median(v) for k, v in _start_up(scratch, _subset(ct, 1)).items()
    }
    return result


def run() -> dict[str, object]:
    """Measure on tmpfs and on the checkout's disk; returns the figures by place."""
    WORK.mkdir(exist_ok=True)
    if not (WORK / "gdcm.pem").exists():
        from benchmarks.run import gdcm_cert

        gdcm_cert()
    tmpfs = Path("/dev/shm") / f"medpipe-bench-{os.getuid()}"
    figures = {"tmpfs": _on("tmpfs", tmpfs), "disk": _on("disk", WORK)}
    (WORK / "product-path.json").write_text(json.dumps(figures, indent=1))
    if os.environ.get("BENCH_KEEP_TMPFS") != "1":
        shutil.rmtree(tmpfs, ignore_errors=True)
    return figures


def targets(
    figures: dict[str, dict[str, object]], network: dict[str, float]
) -> list[tuple[str, float, bool]]:
    """The issue's targets (#28), from the tmpfs figures: ``(target, measured, met)``."""
    fig = figures["tmpfs"]
    out = []

    def rows(label: str) -> dict[str, dict[str, float]]:
        data = fig[label]
        assert isinstance(data, dict)
        found: dict[str, dict[str, float]] = data["rows"]
        return found

    for label, one_floor, loop_floor in (("ct", 1.0, 1.5), ("small", 0.9, 1.7)):
        r = rows(label)
        gdcm = r["gdcmanon -e"]["cpu_us_per_file"]
        for name, floor in (("medpipe run -j 1", one_floor), ("Deidentifier loop", loop_floor)):
            value = gdcm / r[name]["cpu_us_per_file"] if r[name]["cpu_us_per_file"] > 0 else 0
            out.append(
                (f"{name} >= {floor} x gdcmanon per core ({label}, slope)", value, value >= floor)
            )
    ct = rows("ct")
    speed_up = (
        ct["medpipe run -j 1"]["wall_us_per_file"]
        / ct[f"medpipe run -j {CORES}"]["wall_us_per_file"]
    )
    out.append(
        (f"medpipe run -j {CORES} >= 1.8 x -j 1 (CT, wall slope)", speed_up, speed_up >= 1.8)
    )
    start = fig["start_up"]
    assert isinstance(start, dict)
    empty = float(start["empty INPUT wall"])
    out.append(("medpipe run start-up (empty INPUT) <= 0.15 s", empty, empty <= 0.15))
    one = network.get("storescu -> medpipe receive (1 assoc)", 0.0)
    four = network.get("storescu -> medpipe receive (4 assoc)", 0.0)
    ratio = four / one if one else 0.0
    out.append(("medpipe receive, 4 associations >= 1.7 x one", ratio, ratio >= 1.7))
    return out


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 and a > 0 else "n/a"


def section(figures: dict[str, dict[str, object]], network: dict[str, float] | None) -> str:
    """The Markdown section for docs/benchmarks.md."""
    lines = [
        "## The product path (`medpipe run`) per core, steady state and start-up\n",
        f"Slope between the first {CT_SMALL} and all {CT_LARGE} CT files (512x512, 16-bit)",
        f"and between {SMALL // 5} and {SMALL} small files (32x32): CPU microseconds per",
        "file (user + system, the command and its children), wall microseconds beside it;",
        "`x gdcmanon` is gdcmanon's CPU per file over the tool's (higher is faster, per",
        "core). All-cores rows: wall per file, and `x -j 1` their wall speed-up. Medians of",
        f"{ROUNDS} interleaved rounds, measured by `benchmarks/product_path.py`.\n",
    ]
    for where, fig in figures.items():
        for label in ("ct", "small"):
            data = fig[label]
            assert isinstance(data, dict)
            rows = data["rows"]
            gdcm = rows.get("gdcmanon -e", {}).get("cpu_us_per_file", 0.0)
            one = rows.get("medpipe run -j 1", {}).get("wall_us_per_file", 0.0)
            lines.append(
                f"\n**{where}, {label} set** ({data['files'][0]} and {data['files'][1]} files)\n"
            )
            lines.append(
                "| command | CPU µs/file | wall µs/file | fixed CPU s "
                "| x gdcmanon (CPU) | x -j 1 (wall) |"
            )
            lines.append("|---|---|---|---|---|---|")
            for name, r in rows.items():
                lines.append(
                    f"| {name} | {r['cpu_us_per_file']:.0f} | {r['wall_us_per_file']:.0f} | "
                    f"{r['fixed_cpu_s']:.2f} | {_ratio(gdcm, r['cpu_us_per_file'])} | "
                    f"{_ratio(one, r['wall_us_per_file']) if name.startswith('medpipe') else '-'} |"
                )
        start = fig["start_up"]
        assert isinstance(start, dict)
        lines.append(
            f"\nStart-up on {where} (wall / CPU s): "
            + "; ".join(
                f"{k} {start[k + ' wall']:.2f} / {start[k + ' cpu']:.2f}"
                for k in ("empty INPUT", "one file", "re-run, nothing to do")
            )
            + f". Outputs of `-j 1` and `-j {CORES}` identical: "
            f"{'yes' if fig['identical_for_any_workers'] else 'NO'}.\n"
        )
    if network:
        one = network.get("storescu -> medpipe receive (1 assoc)", 0.0)
        four = network.get("storescu -> medpipe receive (4 assoc)", 0.0)
        lines.append(
            f"`medpipe receive`: {one:.1f} instances/s with one association, {four:.1f} with"
            f" four at once ({_ratio(four, one)}x; `-j {CORES}` worker processes).\n"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(section(run(), None))
