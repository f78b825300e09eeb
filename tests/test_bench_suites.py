"""Keep the benchmark suites working: each runs at --quick size (seconds) here.

The full runs behind bench/README.md take about an hour and are run by hand.
Flower's side needs its own virtual environment (.venv-flower, which
``secagg bench flower`` creates by downloading flwr): the tests never create it.
Where it is missing, the Flower comparison test skips with the reason, while our
side of the same suite, and the refusal to run without the venv, are still tested.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from bench import dropout, flower, report, scaling, wrap
from bench.common import quantized_input
from secagg.cli import bench as cli_bench
from secagg.cli import main as secagg_main


@pytest.fixture(scope="module")
def quick_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder holding every suite's quick results (our side of flower only)."""
    out = tmp_path_factory.mktemp("bench")
    common = ["--quick", "--out", str(out)]
    assert scaling.main([*common, "--quiet"]) == 0
    assert dropout.main([*common, "--quiet"]) == 0
    assert flower.main([*common, "--quiet", "--no-flower"]) == 0
    assert wrap.primitives_main(common) == 0
    assert wrap.protocol_main(common) == 0
    return out


def _load(out: Path, suite: str) -> dict:
    data = json.loads((out / f"{suite}.json").read_text())
    assert data["suite"] == suite and data["quick"] is True
    assert data["machine"]["cpu_count"] >= 1 and data["command"].startswith("secagg bench")
    with (out / f"{suite}.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) >= 1
    return data


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_scaling_quick(quick_dir: Path) -> None:
    rows = _load(quick_dir, "scaling")["rows"]
    assert {r["sweep"] for r in rows} >= {"n", "m", "graph", "drop-round"}
    assert {r["drop_at"] for r in rows} >= {"advertise", "masked-input", "unmask"}
    for r in rows:
        assert r["exact"] and not r["aborted"]
        assert r["floor_seconds"] > 0 and r["server_to_floor"] > 0
        assert r["bytes_up_per_client"] > 0 and r["peak_server_mb"] > 0
        # R = 2^32 packs to 4 bytes per element, plus a fixed header per message
        assert 4.0 <= r["masked_bytes_per_element"] < 4.1
    if _has_matplotlib():
        assert (quick_dir / "scaling_cost_vs_n.png").stat().st_size > 1000


def test_dropout_quick(quick_dir: Path) -> None:
    data = _load(quick_dir, "dropout")
    for group in data["completion"]:
        for r in group["rows"]:
            assert r["wrong_sum"] == 0
            assert 0.0 <= r["analytic_lower"] <= r["predicted"] + 0.05
            assert r["predicted"] <= r["analytic_upper"] + 0.05
            if r["rate"] == 0:
                assert r["observed"] == 1.0 and r["predicted"] == 1.0
    (rec,) = data["recovery"]
    assert [r["dropped"] for r in rec["rows"]] == [0, 2, 4]
    assert all(r["exact"] for r in rec["rows"])
    # complete graph: each dropped client's mask is regenerated for every survivor
    assert [r["pairwise_masks"] for r in rec["rows"]] == [0, 2 * 10, 4 * 8]
    if _has_matplotlib():
        assert (quick_dir / "dropout_completion.png").exists()


def test_binomial_prediction_is_exact_for_the_complete_graph() -> None:
    """The closed form matches a Monte Carlo of the server's abort rules at every round."""
    rng = np.random.default_rng(0)
    for p in (0.1, 0.35, 0.5):
        lower, upper = dropout.analytic_bounds("complete", 12, 11, 7, p, "masked-input")
        assert lower == upper == pytest.approx(dropout.binomial_at_least(12, 1 - p, 8))
        for rnd in ("advertise", "share-keys", "masked-input", "unmask"):
            mc = dropout.rules_mc("complete", 12, 11, 7, p, rnd, 20_000, rng)
            assert mc == pytest.approx(lower, abs=0.02)


def test_harary_bounds_bracket_the_rules() -> None:
    rng = np.random.default_rng(1)
    for p in (0.2, 0.35, 0.5):
        lower, upper = dropout.analytic_bounds("harary", 60, 10, 4, p, "masked-input")
        mc = dropout.rules_mc("harary", 60, 10, 4, p, "masked-input", 20_000, rng)
        assert lower - 0.02 <= mc <= upper + 0.02


def test_finder_union_bound_below_its_target() -> None:
    """The (k, t) the finder picked for n = 1000 at 10% meet its 2^-20 failure target."""
    from secagg.graph import find_harary_params

    params = find_harary_params(1000, 0.1, 0.05)
    bound = dropout.finder_union_bound(1000, params.k, params.t, 0.1)
    assert 0 < bound < 2.0**-20
    assert dropout.finder_union_bound(1000, params.k, params.t - 1, 0.1) < bound
    assert math.isclose(dropout.binomial_at_least(5, 0.5, 0), 1.0)
    assert dropout.binomial_at_least(5, 0.5, 6) == 0.0


def test_flower_suite_our_side(quick_dir: Path) -> None:
    rows = _load(quick_dir, "flower")["rows"]
    assert {r["graph"] for r in rows} == {"complete", "harary"}
    assert {r["drop_at"] for r in rows} >= {"advertise", "masked-input"}
    for r in rows:
        assert r["exact"] and "flower_server_seconds" not in r
    cost = [r for r in rows if r["kind"] == "cost"]
    assert all(r["server_seconds_1thread"] > 0 for r in cost)


def test_flower_inputs_match_the_runner() -> None:
    """Both sides must generate the very same integer vectors from the seed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("flower_runner", flower.RUNNER)
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)  # imports only numpy at module level
    ours = quantized_input(3, 7, 500)
    theirs = runner.make_q(3, 7, 500)
    assert np.array_equal(ours.astype(np.int64), theirs)
    assert int(theirs.max()) < runner.QRANGE


def test_flower_refuses_without_its_venv(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    code = flower.main(["--quick", "--no-setup", "--flower-venv", str(tmp_path / "none"),
                        "--out", str(tmp_path)])
    assert code == 2
    assert "no flwr" in capsys.readouterr().err


@pytest.mark.skipif(flower.flower_version(flower.DEFAULT_VENV) != flower.FLOWER_VERSION,
                    reason=f"no flwr {flower.FLOWER_VERSION} in {flower.DEFAULT_VENV.name} "
                           "(create it with 'secagg bench flower --setup-only'; "
                           "tests never download it)")
def test_flower_quick_against_flower(tmp_path: Path) -> None:
    assert flower.main(["--quick", "--no-setup", "--quiet", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "flower.json").read_text())["rows"]
    cost = [r for r in rows if r["kind"] == "cost"]
    for r in cost:
        assert r["exact"] and r["flower_exact"] and r["sums_agree"]
        assert r["server_speedup"] > 0 and r["client_speedup"] > 0
        assert r["flower_masked_bytes_per_element"] > 8  # int64 on the wire
    harary = next(r for r in cost if r["graph"] == "harary")
    assert harary["flower_num_shares"] == harary["k"] + 1
    assert harary["flower_threshold"] == harary["t"]
    early = next(r for r in rows if r["kind"] == "drop-round" and r["drop_at"] == "advertise")
    assert early["exact"] and not early["flower_completed"]  # Flower's KeyError on early drops


def test_primitives_and_protocol_wrapped(quick_dir: Path) -> None:
    prim = _load(quick_dir, "primitives")
    assert prim["prg"]["aes128-ctr"]["ratio_2^32"] > 0
    proto = _load(quick_dir, "protocol")
    assert proto["rows"] and all(r["exact"] for r in proto["rows"])


def test_report_renders(quick_dir: Path) -> None:
    assert report.main(["--out", str(quick_dir)]) == 0
    text = (quick_dir / "README.md").read_text()
    for heading in ("## Targets", "## Ours vs Flower", "## Scaling", "## Dropout tolerance",
                    "## Primitives", "## Protocol issue"):
        assert heading in text
    assert "AMD" in text or "Intel" in text or "vCPU" in text
    assert "upload <= ceil(log2 R)/8" in text


def test_report_quick_needs_out() -> None:
    with pytest.raises(SystemExit):
        report.main(["--quick", "--run"])


def test_cli_bench_dispatch(tmp_path: Path) -> None:
    path_before = list(sys.path)
    code = secagg_main(["bench", "scaling", "--quick", "--quiet", "--no-plots", "--only", "m",
                        "--out", str(tmp_path)])
    assert code == 0
    assert sys.path == path_before  # the checkout's bench/ is found without sys.path
    rows = json.loads((tmp_path / "scaling.json").read_text())["rows"]
    assert rows and {r["sweep"] for r in rows} == {"m"}


def test_cli_bench_imports_the_checkout_by_location(tmp_path: Path) -> None:
    """With bench/ not imported and not on sys.path, `secagg bench` loads it from the checkout."""
    script = (
        "import importlib.util, sys\n"
        "from pathlib import Path\n"
        "from secagg.cli import main\n"
        "from secagg.cli.bench import checkout_root\n"
        "root = checkout_root()\n"
        "sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != root]\n"
        "assert importlib.util.find_spec('bench') is None, 'bench/ still on sys.path'\n"
        "before = list(sys.path)\n"
        "try:\n"
        "    main(['bench', 'report', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print(sys.modules['bench.report'].__file__)\n"
        "print(sys.path == before)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    *_, where, unchanged = proc.stdout.splitlines()
    assert Path(where) == cli_bench.checkout_root() / "bench" / "report.py"
    assert unchanged == "True"


def test_cli_bench_refuses_without_a_checkout(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli_bench, "checkout_root", lambda: None)
    assert secagg_main(["bench", "scaling", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err == ("secagg bench: needs a source checkout of secagg "
                   "(bench/ is not installed with the package)\n")


def test_cli_bench_refuses_a_foreign_bench_package(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    foreign = types.ModuleType("bench")
    foreign.__file__ = str(tmp_path / "bench" / "__init__.py")
    monkeypatch.setitem(sys.modules, "bench", foreign)
    assert secagg_main(["bench", "report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("secagg bench: needs a source checkout of secagg (another package "
                          "named bench is imported from ") and err.count("\n") == 1


def test_report_keeps_sections_their_own_scripts_wrote(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n## Targets\n\nold table\n")
    mark = report.STANDALONE_MARK
    report.write_standalone_section(readme, "Explorer", f"`cmd` ({mark}).\n\n| a |\n|---|\n")
    report.write_standalone_section(readme, "Explorer", f"`cmd2` ({mark}).\n\n| b |\n|---|\n")
    text = readme.read_text()
    assert text.count("## Explorer") == 1 and "cmd2" in text and "old table" in text
    kept = report.standalone_sections(readme)
    assert kept[1] == "## Explorer" and "| b |" in kept
    assert all("old table" not in line for line in kept)  # generated sections are redrawn
