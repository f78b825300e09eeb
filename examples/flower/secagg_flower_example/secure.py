"""Which secure aggregation the app runs, chosen by the run config, and what it costs.

The app is the same for both choices except the two imports Flower's own example
has (``secaggplus_mod`` on the client, ``SecAggPlusWorkflow`` on the server):
run-config ``secagg-impl = "secagg"`` (default) takes them from ``secagg.flower``,
``"flower"`` from ``flwr.client.mod`` / ``flwr.server.workflow``. Only the chosen
module is imported, so a benchmark of one pays no import of the other. In Flower's
deployment engine every message starts a fresh ClientApp process, so that import
is paid once per message.

Run-config ``timing-dir`` (a directory; empty: off) makes every ClientApp process
append one JSON line per message there: its stage, how long the process had run
before the mod was called (process start, Python, Flower and the app's imports),
the mod's own import time and the time inside the mod. ``secagg bench flower
--engine deployment`` reads these lines.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

#: run-config value -> (client mod module, server workflow module); the names are the same
IMPLEMENTATIONS = {
    "secagg": ("secagg.flower", "secagg.flower"),
    "flower": ("flwr.client.mod", "flwr.server.workflow"),
}


def implementation(run_config: Any) -> str:
    impl = str(run_config.get("secagg-impl", "secagg") or "secagg")
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"secagg-impl must be one of {sorted(IMPLEMENTATIONS)}, not {impl!r}")
    return impl


def process_age() -> float | None:
    """Seconds since this process was created (Linux ``/proc``; None elsewhere)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def stage_of(msg: Message) -> str:
    """The secure-aggregation stage a message belongs to (either implementation)."""
    if msg.has_content():
        for record in msg.content.config_records.values():
            if "stage" in record:
                return str(record["stage"])
    return "none"


def select_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """The chosen implementation's ``secaggplus_mod``, imported on first use."""
    age = process_age()
    stage = stage_of(msg)  # before the mod: it takes its record out of the message
    impl = implementation(ctxt.run_config)
    start = time.perf_counter()
    mod = importlib.import_module(IMPLEMENTATIONS[impl][0]).secaggplus_mod
    imported = time.perf_counter()
    reply: Message = mod(msg, ctxt, call_next)
    timing_dir = str(ctxt.run_config.get("timing-dir", "") or "")
    if timing_dir:
        line = {"impl": impl, "node": ctxt.node_id, "stage": stage,
                "process_age_s": age, "mod_import_s": imported - start,
                "mod_s": time.perf_counter() - imported, "pid": os.getpid()}
        Path(timing_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(timing_dir) / f"client-{ctxt.node_id}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
    return reply


def make_workflow(run_config: Any, num_nodes: int) -> Any:
    """The chosen implementation's ``SecAggPlusWorkflow`` with the app's parameters."""
    impl = implementation(run_config)
    module = importlib.import_module(IMPLEMENTATIONS[impl][1])
    timeout = float(run_config.get("stage-timeout", 0.0)) or None
    shares = _number(run_config.get("num-shares", num_nodes))
    threshold = _number(run_config.get("reconstruction-threshold", 6))
    clip = float(run_config.get("clipping-range", 8.0))
    max_weight = int(run_config.get("max-weight", 2000))
    if impl == "flower":
        return module.SecAggPlusWorkflow(num_shares=shares, reconstruction_threshold=threshold,
                                         clipping_range=clip, max_weight=float(max_weight),
                                         timeout=timeout)
    transcripts = str(run_config.get("transcript-dir", "") or "") or None
    # distributed DP from the run config's dp-* keys (the clients' mod reads the same);
    # then a client's vector is its noised update only: no metrics are summed
    dp = importlib.import_module("secagg.flower.dp").options_from_run_config(run_config)
    return module.SecAggPlusWorkflow(
        num_shares=shares, reconstruction_threshold=threshold, clipping_range=clip,
        max_weight=max_weight, timeout=timeout, transcript_dir=transcripts,
        min_cohort=int(run_config.get("min-cohort", 0)) or None,
        secure_metrics=() if dp else ("train_loss", "train_accuracy"), dp=dp)


def _number(value: Any) -> int | float:
    """A share count or threshold: an integer, or a float fraction as both workflows take."""
    return value if isinstance(value, float) else int(value)
