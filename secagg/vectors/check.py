"""Checking an implementation against vector files: recompute every output and compare.
"""

from __future__ import annotations

import json
from pathlib import Path

from secagg.vectors.codec import FORMAT, FORMAT_VERSION, Json
from secagg.vectors.generate import FILES
from secagg.vectors.kinds import _KINDS


def _check_one(vec: Json) -> tuple[bool, str]:
    kind = vec.get("kind")
    compute = _KINDS.get(kind) if isinstance(kind, str) else None
    if compute is None:
        return False, f"unknown kind {kind!r}"
    try:
        got = compute(vec["input"])
    except Exception as exc:  # report, never raise: the caller is an audit command
        return False, f"error while recomputing: {type(exc).__name__}: {exc}"
    want = vec.get("output")
    if got == want:
        return True, "reproduced"
    if not isinstance(want, dict):
        return False, "output is not an object"
    fields = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    return False, "differs in " + ", ".join(fields)


def check_vectors(directory: Path) -> list[tuple[str, bool, str]]:
    """Recompute every vector in ``directory`` and compare: ``(name, ok, detail)`` per vector.

    Names are ``<file>/<vector>``. A missing, unreadable or wrong-format file is one
    failed entry named after the file; a vector whose recomputation raises fails
    with the exception's type and message. Never raises for bad files.
    """
    root = Path(directory)
    results: list[tuple[str, bool, str]] = []
    for name in FILES:
        path = root / f"{name}.json"
        try:
            doc = json.loads(path.read_text(encoding="ascii"))
        except (OSError, ValueError) as exc:
            results.append((name, False, f"cannot read {path.name}: {type(exc).__name__}"))
            continue
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            results.append((name, False, f"{path.name} is not a {FORMAT} file"))
            continue
        if doc.get("version") != FORMAT_VERSION:
            results.append((name, False, f"unsupported format version {doc.get('version')!r}"))
            continue
        vectors = doc.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            results.append((name, False, "no vectors"))
            continue
        for i, vec in enumerate(vectors):
            if not isinstance(vec, dict):
                results.append((f"{name}/#{i}", False, "vector is not an object"))
                continue
            ok, detail = _check_one(vec)
            results.append((f"{name}/{vec.get('name', f'#{i}')}", ok, detail))
    return results
