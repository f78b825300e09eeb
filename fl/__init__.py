"""fl: Federated Averaging whose average is computed by secure aggregation.

- :mod:`fl.data`: scikit-learn's bundled data sets split across clients (IID or
  Dirichlet label skew), each client with its own test part;
- :mod:`fl.models`: the :class:`~fl.models.Model` protocol (NDArrays get/set, local
  SGD, evaluation) and numpy softmax-regression and MLP models;
- :mod:`fl.fedavg`: the training loop over
  :class:`secagg.aggregator.SecureAggregator`, with a plaintext twin run;
- :mod:`fl.algorithms`: FedAvg, FedProx, SCAFFOLD and FedPer (what clients send,
  what the server does with the means); :mod:`fl.parts`: several parts with their
  own clipping ranges in one secure session;
- :mod:`fl.torch_adapter`: any PyTorch ``nn.Module`` as a Model (extra ``torch``);
- :mod:`fl.plot`: the accuracy plot of ``secagg train``.

Nothing here imports scikit-learn, matplotlib or torch until it is used.
"""

from fl.fedavg import FedAvgConfig, RoundRecord, TrainingHistory, run_fedavg
from fl.models import MLP, LogisticRegression, Metrics, Model, make_model

__all__ = [
    "MLP",
    "FedAvgConfig",
    "LogisticRegression",
    "Metrics",
    "Model",
    "RoundRecord",
    "TrainingHistory",
    "make_model",
    "run_fedavg",
]
