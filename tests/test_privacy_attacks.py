"""fl.privacy: gradient inversion and membership inference on one update vs the secure sum.

Tiny cases of the attacks behind `secagg attack` (issue 17): the inversion
recovers a digit from one client's update and recovers nothing from the secure
sum of 20; the DP view adds the calibrated noise; the CLI's JSON and exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fl.data import load  # noqa: E402
from fl.privacy.inversion import (  # noqa: E402
    RECOVERED_MSE,
    InversionConfig,
    best_match,
    infer_labels,
    invert,
)
from fl.privacy.noise import distributed_discrete_gaussian  # noqa: E402
from fl.privacy.updates import DPConfig, local_update, params_of, secure_sum  # noqa: E402
from fl.torch_adapter import mlp_module  # noqa: E402
from secagg.cli import main  # noqa: E402
from secagg.errors import ConfigError  # noqa: E402

FAST = InversionConfig(iterations=200, restarts=1)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return load("digits")


def _setup(digits: tuple[np.ndarray, np.ndarray], count: int, seed: int = 3):
    x, y = digits
    idx = np.random.default_rng(seed).choice(x.shape[0], count, replace=False)
    module = mlp_module(64, 10, seed=0)
    w0 = params_of(module)
    xs = torch.tensor(x[idx], dtype=torch.float32)
    ys = torch.tensor(y[idx])
    updates = [local_update(module, w0, xs[i:i + 1], ys[i:i + 1], lr=0.1, local_steps=1)
               for i in range(count)]
    return module, w0, idx, updates


def test_recovers_a_single_example_from_a_single_update(digits) -> None:
    x, y = digits
    module, w0, idx, updates = _setup(digits, 1)
    rec, labels = invert(module, w0, updates[0], 1, lr=0.1, local_steps=1, config=FAST)
    match = best_match(rec, x)
    assert labels.tolist() == [int(y[idx[0]])]  # iDLG's label
    assert match.recovered.all() and match.index[0] == idx[0]
    assert match.mse[0] < RECOVERED_MSE / 10


def test_recovers_nothing_from_the_secure_sum_of_20(digits) -> None:
    x, _ = digits
    module, w0, _, updates = _setup(digits, 20)
    total = secure_sum(updates, clip=2.0)
    plain = [sum(u[k] for u in updates) for k in range(len(updates[0]))]
    for s, p in zip(total, plain, strict=True):  # the secure sum is the sum (to quantization)
        assert torch.allclose(s, p, atol=1e-3)
    rec, _ = invert(module, w0, total, 20, lr=0.1, local_steps=1, config=FAST)
    assert best_match(rec, x).recovered_fraction <= 0.05
    single, _ = invert(module, w0, total, 1, lr=0.1, local_steps=1, config=FAST)
    assert not best_match(single, x).recovered.any()


def test_label_counts_from_the_bias_of_a_batch(digits) -> None:
    x, y = digits
    module = mlp_module(64, 10, seed=0)
    w0 = params_of(module)
    idx = np.array([0, 1, 2, 11])  # labels 0, 1, 2, 1
    upd = local_update(module, w0, torch.tensor(x[idx], dtype=torch.float32),
                       torch.tensor(y[idx]), lr=0.1, local_steps=1)
    p_mean = torch.softmax(module(torch.rand(256, 64)), dim=1).mean(0).detach()
    labels = infer_labels(upd, 4, lr=0.1, local_steps=1, p_mean=p_mean)
    assert sorted(labels.tolist()) == sorted(y[idx].tolist())


def test_dp_noise_has_the_calibrated_deviation() -> None:
    noise = distributed_discrete_gaussian(100_000, 50.0, 20, np.random.default_rng(1))
    assert noise.dtype == np.int64
    # std error of the sample deviation at n = 1e5 is ~0.11; 1.0 is > 8 of them
    assert abs(noise.std() - 50.0) < 1.0 and abs(noise.mean()) < 0.5
    again = distributed_discrete_gaussian(100_000, 50.0, 20, np.random.default_rng(1))
    assert not np.array_equal(noise, again)  # the generator's seed does not fix the noise
    assert not distributed_discrete_gaussian(10, 0.0, 5, np.random.default_rng(1)).any()
    with pytest.raises(ConfigError):
        DPConfig(multiplier=-1.0)


def test_dp_sum_is_clipped_and_noisy(digits) -> None:
    _, _, _, updates = _setup(digits, 3)
    clean = secure_sum(updates, clip=2.0, dp=DPConfig(multiplier=0.0, clip_norm=0.01))
    norm = float(torch.sqrt(sum((t.double() ** 2).sum() for t in clean)))
    assert norm <= 3 * 0.01 + 1e-3  # each of 3 updates clipped to L2 norm 0.01
    noisy = secure_sum(updates, clip=2.0, dp=DPConfig(multiplier=1.0, clip_norm=0.01))
    diff = torch.cat([(a - b).reshape(-1) for a, b in zip(noisy, clean, strict=True)])
    assert 0.005 < float(diff.std()) < 0.02  # std multiplier * clip_norm per coordinate


def test_membership_json_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mia"
    code = main(["attack", "membership", "--clients", "4", "--local-epochs", "3", "--json",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert [v["view"] for v in summary["views"]] == ["individual", "aggregate", "aggregate_dp"]
    for v in summary["views"]:
        assert 0.0 <= v["auc"] <= 1.0 and 0.0 <= v["tpr_at_1pct_fpr"] <= 1.0
        assert v["members"] > 0 and v["non_members"] > 0
        assert Path(v["png_path"]).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "membership.json").read_text())["views"] == summary["views"]


def test_inversion_cli_json_and_pictures(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["attack", "inversion", "--clients", "3", "--targets", "1", "--iterations",
                 "150", "--restarts", "1", "--json", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    views = {v["view"]: v for v in json.loads(captured.out)["views"]}
    assert set(views) == {"individual", "aggregate", "aggregate_dp"}
    assert views["individual"]["recovered_fraction"] == 1.0
    assert views["aggregate_dp"]["dp_multiplier"] == 1.0
    for v in views.values():
        assert Path(v["png_path"]).is_file()


@pytest.mark.parametrize("argv", [
    ["attack", "inversion", "--clients", "0"],
    ["attack", "inversion", "--batch-size", "0"],
    ["attack", "membership", "--dp", "-1"],
    ["attack", "inversion", "--iterations", "0"],
    ["attack", "inversion", "--clients", "2"],  # a 2-client sum is refused by the library
])
def test_cli_refuses_bad_options(argv: list[str], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert "secagg attack: refused:" in capsys.readouterr().err


def test_cli_unknown_attack_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["attack", "steal-keys"])
    assert exc.value.code == 2
