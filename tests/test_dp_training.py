"""``secagg train --dp`` (spec §21): small runs, and the accounting under dropouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fl.data import federate
from fl.dp_training import DPOptions, run_dp_training
from fl.fedavg import FedAvgConfig
from fl.models import make_model
from secagg.cli import main
from secagg.dp import rdp
from secagg.dp.accountant import round_rdp
from secagg.dp.params import DPParams


def test_train_dp_refuses_other_algorithms(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--dp", "ddg", "--epsilon", "8", "--delta", "1e-5",
                 "--algorithm", "scaffold", "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "--dp runs FedAvg only" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("mechanism", ["ddg", "skellam"])
def test_train_dp_json(mechanism: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--dp", mechanism, "--epsilon", "8", "--delta", "1e-5", "--bits", "16",
                 "--clients", "40", "--rounds", "2", "--json", "--out", str(tmp_path)])
    assert code == 0
    s = json.loads(capsys.readouterr().out)
    assert s["mechanism"] == mechanism and s["bits"] == 16 and s["delta"] == 1e-5
    assert 0 < s["epsilon"] <= 8
    assert s["bytes_up_per_element"] <= 2.05  # B/8 per masked coordinate plus the header
    # the block rotation pads 650 parameters to 512 + 128 + 16, not 1024
    assert s["rotation_blocks"] == [512, 128, 16] and s["bytes_up_per_parameter"] <= 2.1
    assert s["iid"] and s["config"]["local_epochs"] == 3  # the DP job's defaults
    for key in ("final_accuracy_secure", "final_accuracy_central_dp", "final_accuracy_plaintext"):
        assert 0.0 <= s[key] <= 1.0
    assert s["final_accuracy_plaintext"] > s["initial_accuracy"]
    assert [r["epsilon"] for r in s["rounds"]] == sorted(r["epsilon"] for r in s["rounds"])
    assert (tmp_path / "train.json").exists() and (tmp_path / "train.png").exists()


def test_train_dp_refuses_in_one_line(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    # 8 bits cannot hold 40 clients' noisy sum: the planner refuses the width
    assert main(["train", "--dp", "ddg", "--bits", "8", "--clients", "40", "--rounds", "1",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("secagg train: refused: ") and err.count("\n") == 1
    assert main(["train", "--dp", "ddg", "--delta", "0", "--clients", "40",
                 "--out", str(tmp_path)]) == 2


def _recomputed_epsilon(params: DPParams, included: list[int], delta: float) -> float:
    """ε of the rounds as released: each charged with the shares actually summed."""
    total = np.zeros(len(rdp.ORDERS))
    for m in included:
        total = total + round_rdp(params, m)
    return rdp.epsilon_from_rdp(total, delta)


def test_epsilon_never_below_the_included_clients() -> None:
    """ε reported under 0%, 10% and 30% dropout >= ε recomputed from who was included."""
    data = federate("digits", 30, iid=True, seed=1)
    reported = {}
    for rate in (0.0, 0.1, 0.3):
        model = make_model("logreg", data.num_features, data.num_classes, seed=1)
        config = FedAvgConfig(rounds=2, local_epochs=1, dropout=rate, drop_at="masked-input",
                              graph="complete", seed=1)
        # the same noise in every run (sized for 30% dropout): only the survivors differ
        history = run_dp_training(data, model, config,
                                  DPOptions(mechanism="skellam", expected_dropout=0.3))
        included = [len(r.included) for r in history.rounds if not r.aborted]
        assert included == [30 - round(rate * 30)] * 2  # those that sent their masked input
        recomputed = _recomputed_epsilon(history.plan.params, included, 1e-5)
        assert history.epsilon >= recomputed * (1 - 1e-12)
        assert history.epsilon <= 8.0
        reported[rate] = history.epsilon
    # fewer survivors sum less noise: the charge grows with the dropout rate
    assert reported[0.0] < reported[0.1] < reported[0.3]


def _run(dropout: float, **options: object) -> object:
    data = federate("digits", 30, iid=True, seed=2)
    model = make_model("logreg", data.num_features, data.num_classes, seed=2)
    config = FedAvgConfig(rounds=2, local_epochs=1, dropout=dropout, drop_at="masked-input",
                          graph="complete", seed=2)
    return run_dp_training(data, model, config, DPOptions(**options))  # type: ignore[arg-type]


def test_noise_is_sized_for_the_expected_dropout() -> None:
    """Floor = n − floor(e·n) (here above the session's own); the central twin carries the
    very noise the distributed round summed, so its ε is at most the distributed ε."""
    h = _run(0.2, mechanism="ddg", expected_dropout=0.2)
    p = h.plan.params  # type: ignore[attr-defined]
    assert p.floor == 24 and h.expected_dropout == 0.2  # type: ignore[attr-defined]
    for r in h.rounds:  # type: ignore[attr-defined]
        assert len(r.included) == 24 and not r.aborted
        z = (24 * p.client_variance()) ** 0.5 / (p.gamma * p.clip)
        assert r.central_noise_multiplier == pytest.approx(z, rel=1e-12)
        assert 0 < r.epsilon_central_dp <= r.epsilon
    d = h.to_dict()  # type: ignore[attr-defined]
    assert d["survivor_floor"] == 24 and d["epsilon_central_dp"] <= d["epsilon"] <= 8.0
    # a larger declared rate sizes each share for fewer survivors: more noise per client
    h30 = _run(0.2, mechanism="ddg", expected_dropout=0.3)
    assert h30.plan.params.floor == 21  # type: ignore[attr-defined]
    assert h30.plan.params.noise > p.noise  # type: ignore[attr-defined]


def test_more_dropouts_than_declared_are_not_released() -> None:
    h = _run(0.3, mechanism="skellam", expected_dropout=0.1)
    assert all(r.aborted and "survivor floor" in (r.abort_reason or "")
               for r in h.rounds)  # type: ignore[attr-defined]
    assert h.epsilon == 0.0 and h.to_dict()["epsilon_central_dp"] == 0.0  # type: ignore[attr-defined]


def test_fixed_size_sampling_is_charged_with_amplification() -> None:
    """A cohort of 15 of 30 (fixed size): the accountant uses q = 1/2, replace-one, and
    the ε it reports equals the one recomputed from the included counts."""
    data = federate("digits", 30, iid=True, seed=3)
    out = {}
    for sampling in ("none", "fixed"):
        model = make_model("logreg", data.num_features, data.num_classes, seed=3)
        config = FedAvgConfig(rounds=2, local_epochs=1, dropout=0.0, cohort_size=15,
                              graph="complete", seed=3)
        h = run_dp_training(data, model, config, DPOptions(mechanism="skellam",
                                                            sampling=sampling))
        p = h.plan.params
        assert p.sampling_rate == (0.5 if sampling == "fixed" else 1.0)
        included = [len(r.included) for r in h.rounds]
        assert h.epsilon >= _recomputed_epsilon(p, included, 1e-5) * (1 - 1e-12)
        assert h.epsilon <= 8.0 and h.to_dict()["dp_sampling"] == sampling
        out[sampling] = p
    # replace-one doubles the sensitivity: at q = 1/2 the amplification does not pay for
    # it, so each client adds more noise (per unit of clip) than with no sampling claimed
    def noise_per_clip(p: DPParams) -> float:
        return p.client_variance() ** 0.5 / p.gamma

    assert noise_per_clip(out["fixed"]) > noise_per_clip(out["none"])
    assert out["fixed"].binding() != out["none"].binding()


def _poisson_run(**config: object) -> object:
    data = federate("digits", 60, iid=True, seed=4)
    model = make_model("logreg", data.num_features, data.num_classes, seed=4)
    fed = FedAvgConfig(**{"rounds": 3, "local_epochs": 1, "dropout": 0.1,  # type: ignore[arg-type]
                          "drop_at": "masked-input", "graph": "complete", "cohort_size": 45,
                          "seed": 4, **config})
    return run_dp_training(data, model, fed, DPOptions(mechanism="skellam", sampling="poisson"))


def test_poisson_sampling_epsilon_never_below_the_rounds_run() -> None:
    """--dp-sampling poisson: cohorts of varying size (rate 45/60), the noise sized for
    the smallest released cohort's floor, every released round charged at that floor
    (at least the noise it summed), so the reported ε is never below the ε recomputed
    from the included counts; the δ the range's tails cost is reported."""
    h = _poisson_run()
    p, d = h.plan.params, h.to_dict()  # type: ignore[attr-defined]
    lo, hi = d["cohort_range"]
    assert p.sampling == "poisson" and p.sampling_rate == 0.75 and p.clients == min(hi, 60)
    assert 10 <= lo < 45 < hi <= 61 and d["dp_sampling"] == "poisson"
    assert 0 < d["sampling_tail_delta"] <= 1e-6 and d["delta"] == 1e-5
    released = [r for r in h.rounds if not r.aborted]  # type: ignore[attr-defined]
    assert released and all(lo <= len(r.cohort) <= hi for r in h.rounds)  # type: ignore[attr-defined]
    assert len({len(r.cohort) for r in h.rounds}) > 1  # type: ignore[attr-defined]
    delta_rdp = 1e-5 - d["sampling_tail_delta"]
    included = [len(r.included) for r in released]
    assert min(included) >= p.floor
    assert h.epsilon >= _recomputed_epsilon(p, included, delta_rdp) * (1 - 1e-12)  # type: ignore[attr-defined]
    assert h.epsilon == pytest.approx(  # type: ignore[attr-defined]
        _recomputed_epsilon(p, [p.floor] * len(released), delta_rdp), rel=1e-12)
    assert h.epsilon <= 8.0  # type: ignore[attr-defined]


def test_poisson_cohort_outside_the_range_is_skipped_and_not_charged(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A drawn cohort outside the released range trains nothing, releases nothing and is
    not charged (its chance is paid in δ); the JSON lists the skipped rounds."""
    import fl.dp_training as dpt
    from secagg.dp.accountant import PoissonCohorts

    monkeypatch.setattr(dpt, "poisson_cohorts",
                        lambda *a, **k: PoissonCohorts(59, 60, 1e-6, 9e-6))
    h = _poisson_run()
    assert all(r.aborted and r.abort_reason.startswith(dpt.POISSON_SKIP)  # type: ignore[union-attr]
               and r.epsilon_round is None and not r.included
               for r in h.rounds)  # type: ignore[attr-defined]
    d = h.to_dict()  # type: ignore[attr-defined]
    assert d["skipped_rounds"] == [1, 2, 3] and d["epsilon"] == 0.0
    assert d["final_accuracy_secure"] == d["initial_accuracy"]


def test_poisson_cohorts_below_the_minimum_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dp", "skellam", "--clients", "60", "--cohort", "10",
                 "--dp-sampling", "poisson", "--rounds", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "below the minimum cohort" in err and err.count("\n") == 1
