"""One corpus through the three shells: each input gets the same outcome, the same reason
and, when processed, byte-identical output (issue: one per-instance pipeline).

The corpus: generated samples with planted PHI, every file pydicom ships, and the hostile
inputs (cuts, bad lengths, nesting, a deflate bomb). Symbolic links are left out: S3 has
none, and ``medpipe run`` refuses them before the core sees them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from src.cli import main
from src.orchestration import lambda_handlers as lh
from src.settings.locations import input_id
from tests.conftest import TEST_KEY, medpipe, pydicom_files
from tests.integration import workflow_stack as ws
from tests.integration.lambda_seam import MOTO_CONFIG
from tests.integration.test_hostile import build_bad_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, corpus):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("parity") / "in"
    root.mkdir()
    sources = [*corpus.files, *map(Path, pydicom_files())]
    for i, path in enumerate(sources):
        shutil.copyfile(path, root / f"{i:03d}-{path.name}")
    bad = root.parent / "bad"
    build_bad_corpus(bad, corpus.files[0])
    for path in sorted(bad.iterdir()):
        if path.is_file() and not path.is_symlink():
            shutil.copyfile(path, root / f"bad-{path.name}")
    return root


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _by_run(inputs: Path, out: Path) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    medpipe("run", str(inputs), str(out), "-j", "2")
    manifest = json.loads((out / "manifest.json").read_text())
    by_id = {e["input_id"]: e for e in manifest["inputs"]}
    outcomes, outputs = {}, {}
    for path in sorted(inputs.iterdir()):
        entry = by_id[input_id(TEST_KEY.encode(), path.name)]
        outcomes[path.name] = (entry["status"], entry["reason"])
        if entry["status"] == "processed":
            outputs[entry["output"]] = _digest((out / entry["output"]).read_bytes())
    return outcomes, outputs


def _by_deidentify(inputs: Path, out: Path) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    runner = CliRunner()
    outcomes = {}
    out.mkdir()
    for path in sorted(inputs.iterdir()):
        result = runner.invoke(main, ["deidentify", str(path), f"{out}/"])
        if result.exit_code == 0:
            outcomes[path.name] = ("processed", "")
            continue
        assert result.exit_code == 1, (path.name, result.output)
        reason = result.output.split("refused: ", 1)[1].split(":", 1)[0].strip()
        outcomes[path.name] = ("quarantined", reason)
    outputs = {
        str(p.relative_to(out)): _digest(p.read_bytes())
        for p in out.rglob("*.dcm")
        if "quarantine" not in p.parts
    }
    return outcomes, outputs


def _by_lambda(inputs: Path, monkeypatch) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:  # type: ignore[no-untyped-def]
    outcomes = {}
    with mock_aws(config=MOTO_CONFIG):  # type: ignore[arg-type]
        stack = ws.build(monkeypatch)
        boto3.client("secretsmanager", region_name=ws.REGION).put_secret_value(
            SecretId="medpipe/key", SecretString=TEST_KEY
        )
        lh._STATE.clear()
        s3 = stack["s3"]
        for path in sorted(inputs.iterdir()):
            s3.upload_file(str(path), "raw", path.name)
        for path in sorted(inputs.iterdir()):
            response = lh.instance_handler(ws.object_created("raw", path.name), None)
            assert response["statusCode"] == 200, (path.name, response)
            (result,) = response["body"]["results"]
            outcomes[path.name] = (result["status"], result.get("reason", ""))
        outputs = {
            k: _digest(s3.get_object(Bucket="processed", Key=k)["Body"].read())
            for k in ws.keys(s3, "processed")
        }
    return outcomes, outputs


def test_run_deidentify_and_lambda_agree_on_every_input(inputs, tmp_path, monkeypatch):
    run_outcomes, run_outputs = _by_run(inputs, tmp_path / "run")
    cli_outcomes, cli_outputs = _by_deidentify(inputs, tmp_path / "cli")
    aws_outcomes, aws_outputs = _by_lambda(inputs, monkeypatch)
    assert len(run_outcomes) > 120
    statuses = {s for s, _ in run_outcomes.values()}
    assert statuses == {"processed", "quarantined"}
    reasons = {r for _, r in run_outcomes.values()}
    assert {"not-dicom", "truncated", "duplicate-sop-instance", "empty"} <= reasons
    differ = {
        name: (run_outcomes[name], cli_outcomes[name], aws_outcomes[name])
        for name in run_outcomes
        if not run_outcomes[name] == cli_outcomes[name] == aws_outcomes[name]
    }
    assert differ == {}
    assert run_outputs == cli_outputs == aws_outputs
    assert len(run_outputs) == sum(s == "processed" for s, _ in run_outcomes.values())
