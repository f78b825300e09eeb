"""The vector files' format and JSON value helpers (bytes as hex, Z_R elements as decimal
strings, configs as fields), shared by the kinds, the generator and the checker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from secagg import graph as graphs
from secagg.config import Mode, SessionConfig
from secagg.crypto.entropy import DeterministicEntropy
from secagg.crypto.prg import StreamCipher

FORMAT = "secagg-test-vectors"


FORMAT_VERSION = 1


GENERATOR = "python -m secagg.vectors generate specs/vectors"


Json = dict[str, Any]


def _hex(data: bytes) -> str:
    return bytes(data).hex()


def _unhex(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected a hex string")
    return bytes.fromhex(text)


def _ints_out(values: np.ndarray | Sequence[int]) -> list[str]:
    """Z_R elements as decimal strings: R may be 2^64, beyond what JSON numbers carry."""
    return [str(int(v)) for v in (values.tolist() if isinstance(values, np.ndarray) else values)]


def _le64_digest(values: np.ndarray) -> str:
    """SHA-256 of the values as consecutive 8-byte little-endian words (spec-independent
    summary of a long vector, so the file stays small)."""
    return hashlib.sha256(values.astype("<u8").tobytes()).hexdigest()


def _seeded(tag: str) -> DeterministicEntropy:
    """The entropy source of one file's generated inputs; the seed is its public tag."""
    return DeterministicEntropy(b"secagg/v1 test vectors/" + tag.encode())


def _config_from(fields: Json) -> SessionConfig:
    return SessionConfig(
        cohort=tuple(int(u) for u in fields["cohort"]), dim=int(fields["dim"]),
        modulus=int(fields["modulus"]), threshold=int(fields["threshold"]),
        graph=graphs.GraphKind(fields["graph"]), degree=int(fields["degree"]),
        round_index=int(fields["round_index"]), task_hash=_unhex(fields["task_hash"]),
        min_cohort=int(fields["min_cohort"]), dropout_ppm=int(fields["dropout_ppm"]),
        corruption_ppm=int(fields["corruption_ppm"]), mode=Mode(fields["mode"]),
        prg=StreamCipher(fields["prg"]), prg_version=int(fields.get("prg_version", 1)))


def _config_fields(cfg: SessionConfig) -> Json:
    fields: Json = {
        "cohort": list(cfg.cohort), "dim": cfg.dim, "modulus": str(cfg.modulus),
        "threshold": cfg.threshold, "graph": cfg.graph.value, "degree": cfg.degree,
        "round_index": str(cfg.round_index), "task_hash": _hex(cfg.task_hash),
        "min_cohort": cfg.min_cohort, "dropout_ppm": cfg.dropout_ppm,
        "corruption_ppm": cfg.corruption_ppm, "mode": cfg.mode.value, "prg": cfg.prg.value}
    if cfg.prg_version != 1:  # absent for version 1, as in the encoding (§2.6)
        fields["prg_version"] = cfg.prg_version
    return fields
