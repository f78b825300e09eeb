"""Every refusal of the ``secagg`` commands is one line on stderr with exit status 2,
before any work and before anything else is printed (no header, no --insecure warning,
no traceback): issue 14's sweep over simulate, server, client, audit, dp and train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from secagg.cli import main


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    np.save(tmp_path / "float.npy", np.zeros(5))
    np.save(tmp_path / "matrix.npy", np.zeros((2, 3), dtype=np.uint32))
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.npz").mkdir()  # where numpy.savez would write for --out folder
    return {"blocked": str(blocker / "x"), "missing": str(tmp_path / "no" / "x"),
            "float": str(tmp_path / "float.npy"), "matrix": str(tmp_path / "matrix.npy"),
            "folder": str(tmp_path / "folder"), "none": str(tmp_path / "none.npy")}


SERVER = ["server", "--insecure", "--clients", "3", "--dim", "5", "--port", "0",
          "--join-timeout", "0.1"]
CLIENT = ["client", "--insecure", "--server", "127.0.0.1:9", "--id", "1",
          "--connect-timeout", "0.1"]
CASES: list[tuple[list[str], str]] = [
    (["simulate", "--clients", "-5"], "-5"),
    (["simulate", "--clients", "10", "--dim", "10", "--modulus-bits", "99"], "modulus-bits"),
    (["simulate", "--clients", "10", "--dim", "10", "--transcript", "{missing}.jsonl"],
     "does not exist"),
    (["simulate", "--clients", "10", "--dim", "10", "--transcript", "{blocked}.jsonl"],
     "is not a folder"),
    (["simulate", "--clients", "10", "--dim", "10", "--receipts", "r"], "--transcript"),
    ([*SERVER, "--out", "{missing}.npz"], "--out"),
    ([*SERVER, "--out", "{blocked}"], "is not a folder"),
    ([*SERVER, "--out", "{folder}"], "is a folder"),  # {folder}.npz is a folder too
    ([*SERVER, "--modulus-bits", "99"], "modulus-bits"),
    ([*SERVER, "--task-hash", "zz"], "--task-hash"),
    (["server", "--clients", "3", "--dim", "5"], "--certs"),
    ([*CLIENT, "--input", "{float}"], "secagg quantize"),
    ([*CLIENT, "--input", "{matrix}"], "1-d uint32"),
    ([*CLIENT, "--input", "{none}"], "no such file"),
    (["client", "--server", "127.0.0.1:9", "--id", "1"], "--certs"),
    ([*CLIENT[:-4], "--id", "0"], "--id must be in"),
    (["simulate", "--clients", "10", "--dim", "10", "--threads", "-1"], "--threads"),
    (["certs", "init", "{blocked}", "--clients", "2"], "Not a directory"),
    (["audit", "--vectors", "{missing}"], "no such folder"),
    (["audit"], "exactly one of"),
    (["audit", "--explore", "0"], "positive"),
    (["dp", "plan", "--clients", "10", "--dim", "10", "--clip", "1", "--epsilon", "-1",
      "--delta", "1e-5", "--rounds", "1"], "epsilon"),
    (["dp", "plan", "--clients", "200", "--dim", "650", "--clip", "1", "--epsilon", "0.001",
      "--delta", "1e-5", "--rounds", "10"], "unreachable"),  # was an OverflowError
    (["train", "--min-cohort", "2", "--out", "{folder}"], "min_cohort"),
    (["train", "--dp", "ddg", "--epsilon", "0.001", "--out", "{folder}"], "unreachable"),
    (["train", "--out", "{blocked}"], "--out"),
]


@pytest.mark.parametrize(("argv", "words"), CASES, ids=[" ".join(c[0][:3]) + f" [{c[1]}]"
                                                        for c in CASES])
def test_refusal_is_one_line_before_anything_else(
        argv: list[str], words: str, files: dict[str, str],
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = main([a.format(**files) for a in argv])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.out == ""  # no header, no table, no result
    assert captured.err.count("\n") == 1, captured.err  # no warning, no traceback
    assert captured.err.startswith(f"secagg {argv[0]}")
    assert words in captured.err, captured.err


def test_the_server_writes_out_where_it_was_checked(tmp_path: Path) -> None:
    """The --out check resolves numpy's implicit .npz suffix the same way numpy does."""
    from secagg.cli.args import npz_path

    assert npz_path(tmp_path / "sums") == tmp_path / "sums.npz"
    assert npz_path(tmp_path / "sums.npz") == tmp_path / "sums.npz"
    np.savez(tmp_path / "sums", a=np.zeros(1))
    assert (tmp_path / "sums.npz").exists()


@pytest.mark.parametrize("suite", ["dp", "primitives"])
def test_bench_refuses_an_unusable_out_in_one_line_before_running(
        suite: str, files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", suite, "--quick", "--out", files["blocked"]])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing measured, nothing printed
    assert captured.err == (f"secagg bench {suite}: refused: --out {files['blocked']}: cannot "
                            "create the folder (Not a directory)\n")
