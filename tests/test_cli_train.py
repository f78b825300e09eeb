"""`secagg train` end to end through the CLI entry point: JSON summary, results files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from secagg.cli import main


def test_train_json_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    code = main(["train", "--json", "--rounds", "2", "--local-epochs", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    for key in ("final_accuracy_secure", "final_accuracy_plaintext", "rounds", "secagg_seconds"):
        assert key in summary
    assert len(summary["rounds"]) == summary["num_rounds"] == 2
    assert 0.0 <= summary["final_accuracy_secure"] <= 1.0
    assert summary["within_bound"] is True and summary["secagg_seconds"] > 0
    assert summary["config"]["graph"] == "harary" and summary["clients"] == 20
    first = summary["rounds"][0]
    assert len(first["cohort"]) == 20 and first["drop_at"] in (
        "advertise", "share-keys", "masked-input", "unmask")
    assert captured.err == ""  # no progress bar when stderr is not a terminal
    saved = json.loads((out / "train.json").read_text())
    assert saved["final_accuracy_secure"] == summary["final_accuracy_secure"]
    png = (out / "train.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert summary["png_path"] == str(out / "train.png")


def test_train_table_via_console_script(tmp_path: Path) -> None:
    """The installed entry point, as `make run` calls it (table output, breast cancer)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from secagg.cli import main; sys.exit(main())",
         "train", "--dataset", "breast_cancer", "--clients", "10", "--iid", "--rounds", "2",
         "--graph", "complete", "--model", "mlp", "--mu", "0.01", "--drop-at", "masked-input",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.split()[:1] == ["2"] and "8/10" in line for line in lines)
    assert "final test accuracy: secure" in proc.stdout
    assert f"wrote {tmp_path / 'train.json'} and {tmp_path / 'train.png'}" in proc.stdout
    assert proc.stderr == ""


def test_train_refuses_bad_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--clients", "5", "--out", str(tmp_path)]) == 2
    assert "refused" in capsys.readouterr().err
    assert main(["train", "--rounds", "0", "--out", str(tmp_path)]) == 2
    assert main(["train", "--cohort", "30", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "train.json").exists()
    with pytest.raises(SystemExit):
        main(["train", "--model", "cnn"])


def test_help_lists_the_trainer(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "train" in capsys.readouterr().out


@pytest.mark.parametrize("extra", [[], ["--dp", "ddg", "--epsilon", "8", "--delta", "1e-5"]])
def test_unwritable_out_is_refused_before_training(
        extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["train", "--rounds", "1", "--out", str(blocker / "sub"), *extra])
    assert code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("secagg train: refused: --out") and len(err.splitlines()) == 1
    assert "round" not in captured.out  # no training output: refused before it started


def test_min_cohort_is_checked_before_anything_is_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A cohort below --min-cohort is refused in one line on stderr, with no table header."""
    assert main(["train", "--cohort", "8", "--out", str(tmp_path)]) == 2  # default minimum 10
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("secagg train: refused: cohort of 8 clients is below the minimum "
                          "of 10") and err.count("\n") == 1
    assert main(["train", "--min-cohort", "2", "--out", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "min_cohort must be at least 3" in err
    assert not (tmp_path / "train.json").exists()


def test_min_cohort_lowered_explicitly(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--json", "--clients", "12", "--cohort", "6", "--min-cohort", "6",
                 "--rounds", "1", "--local-epochs", "1", "--graph", "complete",
                 "--dropout", "0", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["config"]["min_cohort"] == 6
    assert len(summary["rounds"][0]["cohort"]) == 6
