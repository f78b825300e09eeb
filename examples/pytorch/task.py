"""What the server and the clients of the example share: parameters, model, data, files.

The aggregation parameters must be the same on every side (they are bound into each
session id, and a client with other ones refuses the session). The data split is made
once by ``run.py`` (scikit-learn's digits through ``fl.data``) and written to one file
per client, so the client processes need not import scikit-learn.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fl.torch_adapter import TorchModel, mlp_module
from secagg.deploy import AggregationParams

#: Clip of each coordinate of an update (the change of a weight in one round).
CLIP = 0.5
BITS = 16
#: Largest weight (local training examples) a client may declare.
MAX_WEIGHT = 4096
HIDDEN = 32
FEATURES, CLASSES = 64, 10


def params(clients: int) -> AggregationParams:
    return AggregationParams(clip=CLIP, bits=BITS, max_weight=MAX_WEIGHT, max_clients=clients)


def model(seed: int) -> TorchModel:
    torch.set_num_threads(1)  # a small model gains nothing from intra-op threads
    return TorchModel(mlp_module(FEATURES, CLASSES, hidden=HIDDEN, seed=seed))


# -- files in the work directory ----------------------------------------------------------------
def data_file(work: Path, client: int | str) -> Path:
    return work / "data" / f"{client}.npz"


def model_file(work: Path, round_index: int) -> Path:
    """The model store: the global model of each round (public to the clients)."""
    return work / "models" / f"global-{round_index}.npz"


def update_file(work: Path, round_index: int, client: int) -> Path:
    """Verification mode only: a client's plaintext update (never sent anywhere)."""
    return work / "verify" / f"update-{round_index}-{client}.npz"


def mean_file(work: Path, round_index: int) -> Path:
    """Verification mode only: the server's secure mean of a round."""
    return work / "verify" / f"mean-{round_index}.npz"


def save_arrays(path: Path, arrays: list[np.ndarray], **extra: np.ndarray) -> None:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, *arrays, **extra)
    os.replace(tmp, path)


def load_arrays(path: Path) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Arrays saved by :func:`save_arrays` in order, and the named extras."""
    with np.load(path, allow_pickle=False) as f:
        arrays = [f[f"arr_{i}"] for i in range(sum(k.startswith("arr_") for k in f.files))]
        extra = {k: f[k] for k in f.files if not k.startswith("arr_")}
    return arrays, extra
