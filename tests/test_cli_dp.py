"""``secagg dp plan`` (spec §21.8): prints a plan, emits JSON, refuses unsafe settings."""

from __future__ import annotations

import json

import pytest

from secagg import cli

BASE = ["dp", "plan", "--clients", "300", "--dim", "650", "--clip", "1", "--epsilon", "8",
        "--delta", "1e-5", "--rounds", "10"]


def test_plan_prints_the_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*BASE, "--bits", "16", "--mechanism", "skellam"]) == 0
    out = capsys.readouterr().out
    for word in ("noise multiplier", "error (MSE, mean)", "wrap-around", "2 bytes/coordinate"):
        assert word in out


@pytest.mark.parametrize("mechanism", ["ddg", "skellam"])
def test_plan_json(mechanism: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*BASE, "--bits", "16", "--mechanism", mechanism, "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["mechanism"] == mechanism and j["bits"] == 16
    assert j["epsilon"] <= 8 and j["bytes_per_coordinate"] == 2.0
    assert j["wrap_probability"] <= 1e-4
    assert j["mse"] <= 2 * j["mse_central"]


def test_plan_picks_bits_when_not_given(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*BASE, "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert 8 <= j["bits"] <= 32 and j["mse"] <= 1.1 * j["mse_central"]


@pytest.mark.parametrize("extra", [
    ["--bits", "8"],  # wrap-around bound cannot be met
    ["--bits", "70"],  # beyond the ring widths
    ["--delta", "2"],
    ["--survivor-floor", "400"],
])
def test_plan_refuses_in_one_line(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*BASE, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("secagg dp plan: refused: ") and err.count("\n") == 1


def test_dp_needs_a_subcommand() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["dp"])
    assert exc.value.code == 2


def test_plan_min_block_default_is_the_trainers(capsys: pytest.CaptureFixture[str]) -> None:
    """`dp plan` rotates in blocks of at least 16 by default, as `secagg train --dp` does,
    so its bytes per element are what the trainer sends; --min-block 0 is one block."""
    import argparse

    from fl.dp_cli import add_dp_arguments
    from fl.dp_training import DPOptions
    from secagg.cli.dp import DEFAULT_MIN_BLOCK

    train = argparse.ArgumentParser()
    add_dp_arguments(train)
    assert DEFAULT_MIN_BLOCK == DPOptions().min_block == train.parse_args([]).dp_min_block == 16
    assert cli.main([*BASE, "--bits", "16", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["padded_dim"] == 656 and j["bytes_per_element"] == pytest.approx(2 * 656 / 650)
    assert cli.main([*BASE, "--bits", "16", "--json", "--min-block", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["padded_dim"] == 1024
