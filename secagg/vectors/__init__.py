"""Test vectors: generate ``specs/vectors/*.json`` and check an implementation against them.

Why: the spec (``specs/protocol.md``) fixes every construction byte for byte, and
the only way another implementation (or a refactoring of this one) can prove it
agrees is to reproduce published outputs from published inputs. Every vector is
computed from fixed seeds through :class:`~secagg.crypto.entropy.DeterministicEntropy`,
the one injectable deterministic randomness source (spec section 4.9), so the files are
reproducible byte for byte and their secrets are public by construction.

File format (``FORMAT_VERSION`` 1), one JSON object per file::

    {"format": "secagg-test-vectors", "version": 1, "protocol_version": 1,
     "file": "<name>", "description": "...", "spec": "<sections>",
     "generator": "python -m secagg.vectors generate specs/vectors",
     "vectors": [{"name": ..., "description": ..., "kind": ...,
                  "input": {...}, "output": {...}}, ...]}

Bytes are lowercase hex strings; elements of Z_R vectors are decimal strings (R
may be 2^64, beyond a JSON double); floats are ``float.hex()`` strings (exact).
:func:`check_vectors` recomputes every ``output`` from its ``input`` with this
package and compares; it never raises, it reports.

Command line: ``python -m secagg.vectors generate DIR`` and
``python -m secagg.vectors check DIR`` (exit status 1 if any vector fails).

Modules: :mod:`~secagg.vectors.codec` (format and JSON helpers),
:mod:`~secagg.vectors.kinds` (input -> output per kind), :mod:`~secagg.vectors.session`
(the session vector, over :mod:`secagg.session`), :mod:`~secagg.vectors.generate`
(the files), :mod:`~secagg.vectors.check` and :mod:`~secagg.vectors.cli`.
"""

from __future__ import annotations

from secagg.vectors.check import check_vectors
from secagg.vectors.cli import main
from secagg.vectors.codec import FORMAT, FORMAT_VERSION, GENERATOR
from secagg.vectors.generate import FILES, generate
from secagg.vectors.kinds import message_fields, message_from_fields
from secagg.vectors.session import run_session

__all__ = ["FILES", "FORMAT", "FORMAT_VERSION", "GENERATOR", "check_vectors", "generate", "main",
           "message_fields", "message_from_fields", "run_session"]
