"""``secagg audit``: check a transcript, run the attack suite, or replay test vectors.

* ``secagg audit TRANSCRIPT`` checks a recorded session (``secagg simulate
  --transcript FILE``) against the spec's server rules A1..A11 (spec §18), with
  ``--receipts DIR`` the clients' receipts (A12) and with ``--policy FILE`` the
  declared parameters and round index (A13, A14), and prints one verdict per rule;
* ``secagg audit --attacks`` plays every attack scenario (spec §19) and prints
  one line per scenario, mode and graph;
* ``secagg audit --explore N`` runs N sessions of the randomized malicious-server
  explorer (spec §19.5) and prints what it explored and every leak it found;
* ``secagg audit --vectors DIR`` replays the published test vectors against the
  installed implementation (``secagg.vectors.check_vectors``).

Exit status: 0 everything passed / every defended attack was defeated / no explored
leak beyond the spec / every vector matched; 1 a violation, an attack not defeated, a
leak beyond the spec, or a vector mismatch; 2
the input could not be read or the options are wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from secagg.cli.args import hex32
from secagg.cli.plugins import SubParsers
from secagg.config import DEFAULT_MIN_COHORT
from secagg.errors import SecAggError
from secagg.identity import DirectoryTrustStore, FileTrustStore, TrustStore

if TYPE_CHECKING:
    from secagg.receipt import Receipt


def register(sub: SubParsers) -> None:
    p = sub.add_parser(
        "audit",
        help="audit a session transcript, run the attack suite, or replay test vectors",
        description="Check a recorded session transcript against the server rules of the spec "
        "(A1..A11, spec §18); with --attacks, run every malicious-server and malicious-client "
        "scenario (spec §19); with --vectors DIR, replay the test vectors.",
    )
    p.add_argument("transcript", nargs="?", default=None,
                   help="transcript file written by 'secagg simulate --transcript FILE', "
                   "'secagg server --transcript DIR' or the Flower workflow")
    p.add_argument("--attacks", action="store_true",
                   help="run the attack suite: one line per scenario; exit 0 only when every "
                   "scenario is defeated in each mode that claims to defend it")
    p.add_argument("--scenario", action="append", default=None, metavar="NAME",
                   help="with --attacks: run only this scenario (name or id; repeatable)")
    p.add_argument("--graph", choices=["complete", "harary", "both"], action="append",
                   default=None, help="with --attacks or --explore: run only on this graph "
                   "(repeatable; default both)")
    p.add_argument("--explore", type=int, default=None, metavar="N",
                   help="run N sessions of the randomized malicious-server explorer (spec "
                   "§19.5); exit 0 only when no leak is beyond what the spec gives up")
    p.add_argument("--seed", type=int, default=0, help="with --explore: the search's seed")
    p.add_argument("--mode", choices=["semi-honest", "active", "both"], default="both",
                   help="with --explore: the modes explored (default both)")
    p.add_argument("--vectors", metavar="DIR", default=None,
                   help="replay the test vectors in DIR against this installation")
    p.add_argument("--trust-store", metavar="PATH", default=None,
                   help="identity keys for an active-mode transcript: a JSON file "
                   "{\"id\": \"hex\"} or a directory of <id>.pub files (default: the keys "
                   "recorded in the transcript)")
    p.add_argument("--receipts", metavar="DIR", default=None,
                   help="with TRANSCRIPT: check the clients' receipts in DIR (receipt-*.json) "
                   "against it (rule A12, spec §18.6)")
    p.add_argument("--policy", metavar="FILE", default=None,
                   help="with TRANSCRIPT: check the declared rates, threshold, degree and "
                   "round index against the auditor's policy, a JSON object with any of "
                   "min_corruption_rate, min_dropout_rate, grind_margin_bits, round_index "
                   "(rules A13, A14, spec §18.8)")
    p.add_argument("--log", metavar="FILE", default=None,
                   help="check a server's signed session log (chain, signatures, and the "
                   "hash of every logged transcript found; spec §18.7)")
    p.add_argument("--server-key", metavar="HEX", default=None,
                   help="with --log: the server's log verify key (default: the one the log "
                   "names, which proves only that the log is self-consistent)")
    p.add_argument("--transcripts", metavar="DIR", default=None,
                   help="with --log: where the logged transcripts are (default: the log's "
                   "directory)")
    p.add_argument("--min-cohort", type=int, default=DEFAULT_MIN_COHORT, metavar="N",
                   help=f"smallest acceptable cohort (default {DEFAULT_MIN_COHORT})")
    p.add_argument("--task-hash", metavar="HEX", default=None,
                   help="the 32-byte model hash the session must carry (hex)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _explore(args: argparse.Namespace) -> int:
    """``secagg audit --explore N``: print what was explored and every leak; exit 0 only
    when no leak is beyond the spec (1 otherwise; 2: bad options)."""
    from secagg.attacks.explorer import explore
    from secagg.config import Mode
    from secagg.graph import GraphKind

    if args.explore < 1:
        print("secagg audit: --explore needs a positive number of sessions", file=sys.stderr)
        return 2
    graph = "both" if not args.graph or len(set(args.graph)) > 1 else args.graph[0]
    modes = list(Mode) if args.mode in (None, "both") else [Mode(args.mode)]
    kinds = list(GraphKind) if graph == "both" else [GraphKind(graph)]
    report = explore(args.explore, seed=args.seed, modes=modes, kinds=kinds)
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    else:
        for line in report.lines():
            print(line)
    return 1 if report.beyond_spec else 0


def run(args: argparse.Namespace) -> int:
    explore = args.explore is not None
    modes = sum(bool(x) for x in (args.transcript, args.attacks, args.vectors, explore,
                                  args.log))
    if modes != 1:
        print("secagg audit: give exactly one of TRANSCRIPT, --attacks, --vectors DIR, "
              "--explore N, --log FILE", file=sys.stderr)
        return 2
    if args.log:
        return _log(args)
    if explore:
        return _explore(args)
    if args.attacks:
        return _attacks(args)
    if args.vectors:
        folder = Path(args.vectors)
        if not folder.is_dir():
            print(f"secagg audit: refused: --vectors {folder}: no such folder", file=sys.stderr)
            return 2
        return _vectors(folder, args.json)
    return _transcript(args)


def _transcript(args: argparse.Namespace) -> int:
    from secagg.audit import audit_transcript
    from secagg.audit_policy import AuditPolicy
    from secagg.transcript import Transcript

    try:
        transcript = Transcript.read(args.transcript)
        store = _trust_store(args.trust_store) if args.trust_store else None
        task_hash = hex32(args.task_hash, "--task-hash") if args.task_hash else None
        receipts = _receipts(args.receipts) if args.receipts else None
        policy = AuditPolicy.read(args.policy) if args.policy else None
    except SecAggError as exc:
        print(f"secagg audit: {exc}", file=sys.stderr)
        return 2
    report = audit_transcript(transcript, trust_store=store, min_cohort=args.min_cohort,
                              task_hash=task_hash, receipts=receipts, policy=policy)
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    else:
        for line in report.lines():
            print(line)
        failed = sorted(report.failed, key=lambda r: int(r[1:]))
        unchecked = sorted(report.unchecked, key=lambda r: int(r[1:]))
        held = ("every rule holds" if not unchecked else
                "every rule checked holds; not checked: "
                + ", ".join(f"{r} ({_UNCHECKED_WHY.get(r, 'by design')})" for r in unchecked))
        print("verdict: " + (f"PASS ({held})" if report.ok else
                             "FAIL (" + ", ".join(failed or ["rules skipped"]) + ")"))
    return 0 if report.ok else 1


#: why a rule can be left unchecked without failing the verdict (spec §18.5, §18.8)
_UNCHECKED_WHY = {"A11": "masked vectors recorded as hashes",
                  "A14": "the policy names no round index"}


def _log(args: argparse.Namespace) -> int:
    from secagg.session_log import read_log, verify_log

    try:
        key = None if args.server_key is None else hex32(args.server_key, "--server-key")
        log = read_log(args.log)
        findings = verify_log(args.log, server_key=key, transcripts=args.transcripts)
    except SecAggError as exc:
        print(f"secagg audit: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"ok": not findings, "entries": len(log.entries),
                          "head": log.head.hex(), "findings": findings}, sort_keys=True))
    else:
        for f in findings:
            print(f"  - {f}")
        keyed = "given key" if key is not None else "key named in the log (give --server-key)"
        print(f"session log: {len(log.entries)} entries, head {log.head.hex()[:16]}, "
              f"signatures under the {keyed}")
        print("verdict: " + ("PASS (chain, signatures and logged transcripts hold)"
                             if not findings else f"FAIL ({len(findings)} findings)"))
    return 0 if not findings else 1


def _receipts(path: str) -> list[Receipt]:
    from secagg.receipt import read_receipts

    if not Path(path).is_dir():
        raise SecAggError("--receipts must be a directory of receipt-*.json files")
    return read_receipts(path)


def _trust_store(path: str) -> TrustStore:
    return DirectoryTrustStore(path) if Path(path).is_dir() else FileTrustStore(path)


def _attacks(args: argparse.Namespace) -> int:
    from secagg.attacks import SCENARIOS, run_suite, suite_json
    from secagg.graph import GraphKind

    known = {s.name for s in SCENARIOS} | {s.id for s in SCENARIOS}
    unknown = [n for n in args.scenario or [] if n not in known]
    if unknown:
        print(f"secagg audit: unknown scenario {unknown[0]!r}; known: "
              + ", ".join(s.name for s in SCENARIOS), file=sys.stderr)
        return 2
    graphs = [GraphKind(g) for g in args.graph if g != "both"] if args.graph else None
    outcomes = run_suite(args.scenario, graphs)
    if args.json:
        print(suite_json(outcomes))
    else:
        for o in outcomes:
            print(o.line())
        defended = [o for o in outcomes if o.counts]
        beaten = sum(1 for o in defended if o.defeated)
        print(f"verdict: {beaten}/{len(defended)} defended runs defeated the attack"
              + ("" if beaten == len(defended) else " (FAIL)"))
    return 0 if outcomes and all(o.ok for o in outcomes) else 1


def _vectors(directory: Path, as_json: bool) -> int:
    try:
        from secagg import vectors
    except ImportError:
        print("secagg audit: this installation has no test-vector checker (secagg.vectors)",
              file=sys.stderr)
        return 2
    check = getattr(vectors, "check_vectors", None)
    if check is None:
        print("secagg audit: secagg.vectors has no check_vectors()", file=sys.stderr)
        return 2
    try:
        results = list(check(directory))
    except (SecAggError, OSError) as exc:
        print(f"secagg audit: cannot replay the vectors in {directory}: {exc}",
              file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps({"ok": bool(results) and all(ok for _, ok, _ in results),
                          "vectors": [{"name": n, "ok": ok, "detail": d}
                                      for n, ok, d in results]}, sort_keys=True))
    else:
        for name, ok, detail in results:
            print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  ({detail})" if detail else ""))
        if not results:
            print(f"secagg audit: no test vectors found in {directory}", file=sys.stderr)
    return 0 if results and all(ok for _, ok, _ in results) else 1
