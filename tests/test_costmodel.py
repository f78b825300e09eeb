"""bench.costmodel: the fit recovers the costs of runs made from a known model, and its
predictions for W workers divide exactly the parallel terms."""

from __future__ import annotations

import pytest

from bench.costmodel import Model, Run, fit, report


def _run(model: Model, n: int, dropout: float, workers: int, k: int = 30) -> Run:
    pairs = int(n * dropout * k)
    server = n * model.s_client + pairs * model.s_pair
    clients = n * k * model.c_client
    wall = model.wall(n, k, pairs, workers)
    return Run(n, dropout, workers, k, pairs, wall, server, clients, 100.0, 0.0, True)


def test_fit_recovers_a_known_model() -> None:
    truth = Model(fixed=2.0, o_client=1e-4, s_client=3e-4, s_pair=2e-5, c_client=1e-4)
    runs = [_run(truth, n, d, 1) for n in (1000, 2000) for d in (0.0, 0.2)]
    runs += [_run(truth, 2000, d, 2) for d in (0.0, 0.2)]
    got = fit(runs)
    for name in ("fixed", "o_client", "s_client", "s_pair", "c_client"):
        assert getattr(got, name) == pytest.approx(getattr(truth, name), rel=1e-6), name
    text = report(runs, got, 2)
    assert "| 2000 | 0.20 | 2 |" in text and "1e+07" in text
    errors = [line.rsplit("|", 2)[-2].strip() for line in text.splitlines()
              if line.startswith("| 1000 |") or line.startswith("| 2000 |")]
    assert errors and all(e in ("+0%", "-0%") for e in errors)


def test_parallel_terms_divide_by_workers() -> None:
    m = Model(fixed=0.0, o_client=0.0, s_client=0.0, s_pair=1.0, c_client=1.0)
    assert m.wall(10, 3, 6, 2) == pytest.approx((10 * 3 + 6) / 2)
    assert Model(1.0, 1.0, 1.0, 0.0, 0.0).wall(10, 3, 6, 8) == pytest.approx(21.0)
