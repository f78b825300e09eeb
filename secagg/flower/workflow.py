"""Server side: our protocol as a Flower workflow, for both kinds of Flower strategies.

* Legacy strategies (``flwr.server.strategy.FedAvg`` & co.), the path Flower's
  own secure aggregation takes: ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``
  inside a ``ServerApp`` main function, exactly where Flower's
  ``SecAggPlusWorkflow`` goes.
* Message-API strategies (``flwr.serverapp.strategy.FedAvg`` & co.), which have no
  secure aggregation in Flower 1.42: pass ``SecAggGrid(grid, SecAggPlusWorkflow(...))``
  to ``strategy.start`` instead of the grid. The wrapper runs a session
  whenever the strategy sends training messages and hands the strategy one
  reply holding the aggregate.

One FL round is one protocol session over four request/response exchanges
with the sampled nodes (stage names in :class:`~secagg.flower.common.Stage`).
The training instruction (the global model and config the strategy chose)
travels with the third, where the mod trains; the node ids of the sample are
mapped to protocol ids 1..n in ascending node-id order.

The strategy never sees a client's update, example count or metrics: it gets
one result whose parameters are the secure weighted mean, whose
``num_examples`` is the total weight of the included clients and whose metrics
are the secure weighted means of the declared ``secure_metrics`` (what the
server learns from the sum anyway), plus one failure per client left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import cast

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    ConfigRecordValues,
    Context,
    Message,
    MessageType,
    MetricRecord,
)
from flwr.app import RecordDict as FlowerRecordDict
from flwr.common import Code, EvaluateRes, FitRes, Parameters, Status, ndarrays_to_parameters
from flwr.compat.common import recorddict_compat as compat
from flwr.proto.node_pb2 import NodeInfo  # pylint: disable=no-name-in-module
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from secagg.checks import is_plain_int, is_plain_number
from secagg.config import Mode, SessionConfig, SessionSettings, SettingsViews
from secagg.errors import ConfigError, ProtocolError
from secagg.flower.common import (
    EVALUATE_LAYOUT,
    LEGACY_EVALUATE_PARAMETERS,
    RECORD_KEY,
    DecodedAggregate,
    RecordField,
    SessionParams,
    Stage,
    bits_of_range,
    decode_aggregate,
    get_field,
    model_hash,
    model_layout,
    model_record,
    task_hash,
)
from secagg.flower.dp import (
    DPOptions,
    DPRoundReport,
    DPSession,
    ServerDP,
    dp_task_hash,
    params_to_record,
)
from secagg.graph import GraphKind
from secagg.messages import MAGIC, Abort, ServerMessage
from secagg.messages import Message as ProtocolMessage
from secagg.messages import MessageType as WireType
from secagg.quantize import Layout, safe_modulus_bits
from secagg.rounds import Round
from secagg.server import ServerProtocol, ServerState
from secagg.session import ClientChannel, Relay, SessionDriver, SessionObserver
from secagg.session_log import SessionLog
from secagg.transcript import (
    TranscriptObserver,
    Vectors,
    finish_transcript,
    open_session_transcript,
)

logger = logging.getLogger("secagg.flower")

#: Offset of the type code in an encoded message: after the magic and the version (spec §7.2).
_TYPE_OFFSET = len(MAGIC) + 1


@dataclass(frozen=True, eq=False)
class FlowerRoundOutcome:
    """What one session (one FL round's secure aggregation) produced, in Flower node ids.

    ``aggregate`` is None when the session aborted (``abort_reason`` says why);
    ``failures`` lists, per node, why it was left out (error reply, refused or
    missing message), for logs and for the strategy's failure list.
    ``late_dropouts`` lists the nodes that failed only at the unmask stage: their
    masked input arrived, so their input *is* in the sum (the server removed their
    pairwise masks with their neighbours' shares, spec §8.5); they are not failures.
    """

    aggregate: DecodedAggregate | None
    included: tuple[int, ...]
    dropped: tuple[int, ...]
    abort_reason: str | None
    failures: tuple[str, ...]
    config: SessionConfig
    late_dropouts: tuple[str, ...] = ()
    #: distributed DP (spec §21.12): this round's ε (None: not released) and the run's
    #: cumulative ε at δ; None when the workflow runs without DP
    dp: DPRoundReport | None = None


class SecAggPlusWorkflow(SettingsViews):
    """Drop-in for ``flwr.server.workflow.SecAggPlusWorkflow`` running secagg's protocol.

    Parameters named like Flower's mean the same thing:

    * ``num_shares``: shares per secret *counting the owner*, as in Flower
      (our Harary degree is ``num_shares - 1``); a float is a fraction of the
      sampled clients; ``num_shares >= n`` (or None with ``graph="complete"``)
      is the complete graph (SecAgg). None: the complete graph, or the SecAgg+
      parameter finder's degree with ``graph="harary"``.
    * ``reconstruction_threshold``: shares needed to reconstruct (t); a float
      is a fraction of ``num_shares``. None: the safe default of the graph.
      Unsafe (num_shares, threshold) pairs are refused with the reason.
    * ``max_weight``: largest example count a client may report (an integer);
      a larger one is refused by that client's mod, never wrapped.
    * ``clipping_range``: parameters are clipped to ``[-c, c]``.
    * ``quantization_range``: number of quantization levels, a power of two.
    * ``modulus_range``: R, a power of two; None (default) picks the smallest
      modulus the worst-case sum cannot overflow, and a smaller one is refused.
    * ``timeout``: seconds each stage waits for replies (None: until all reply).

    Ours: ``graph`` (``"complete"``/``"harary"``), ``mode`` (``"semi-honest"``;
    ``"active"`` needs long-term client identities that Flower node ids do not
    carry yet and is refused), ``min_cohort`` (sessions with fewer sampled
    clients are refused), ``dropout_rate`` and ``corruption_rate`` (what the
    SecAgg+ finder and checks provision for), ``settings`` (a
    :class:`~secagg.config.SessionSettings` giving mode, min_cohort, rates and,
    when ``graph`` is None, the graph at once; the keywords override it),
    ``secure_metrics`` (training metric keys summed inside the aggregate; other
    metrics never leave the client), ``metrics_range`` (their clip),
    ``weighted_by_key`` (the example count's key in message-API replies) and
    ``threads`` (server unmasking), ``transcript_dir`` (write each session's public
    transcript there, one file per session, for ``secagg audit``; spec §18.5) and
    ``transcript_vectors`` (``"full"`` or ``"hash"``: masked vectors by their SHA-256)
    and ``session_log`` (a :class:`~secagg.session_log.SessionLog` each session's
    transcript hash is appended to, signed and chained; spec §18.7).

    Secure evaluation (off by default, then evaluation travels in clear as in
    Flower): ``secure_evaluate=True`` runs every evaluation round as a session too,
    whose vector holds the loss and the ``evaluate_metrics`` (no model), weighted by
    the example count; the strategy gets one EvaluateRes with their secure weighted
    means and the total example count. Legacy strategies:
    ``DefaultWorkflow(fit_workflow=wf, evaluate_workflow=wf.evaluate)``; message-API
    strategies: :class:`SecAggGrid` routes evaluation batches through a session.

    Distributed DP (spec §21.12): ``dp=DPOptions(mechanism, epsilon, delta, rounds,
    clip, bits, ...)`` (the trainer's names) makes every training session DP: the
    workflow plans the noise for the cohort and model size, binds the parameters
    into the task hash, each client checks them against its own target and adds its
    noise share to its clipped update; the aggregate is the global model plus the
    DP mean update of the included clients (uniform weights: ``num_examples`` is the
    included count), a round below the survivor floor is not released, and every
    released round is charged with its included count. ``dp-epsilon`` (cumulative)
    and ``dp-epsilon-round`` travel in the aggregate's metrics and in
    :attr:`FlowerRoundOutcome.dp`.
    """

    def __init__(
        self,
        num_shares: int | float | None = None,
        reconstruction_threshold: int | float | None = None,
        *,
        max_weight: float = 1000.0,
        clipping_range: float = 8.0,
        quantization_range: int = 4194304,
        modulus_range: int | None = None,
        timeout: float | None = None,
        graph: GraphKind | str | None = None,
        mode: Mode | str | None = None,
        min_cohort: int | None = None,
        dropout_rate: float | None = None,
        corruption_rate: float | None = None,
        settings: SessionSettings | None = None,
        secure_metrics: Sequence[str] = (),
        metrics_range: float = 100.0,
        weighted_by_key: str = "num-examples",
        threads: int | None = None,
        transcript_dir: str | None = None,
        transcript_vectors: str = "full",
        session_log: SessionLog | None = None,
        secure_evaluate: bool = False,
        evaluate_metrics: Sequence[str] = (),
        dp: DPOptions | None = None,
    ) -> None:
        self.num_shares = _check_count(num_shares, "num_shares")
        self.reconstruction_threshold = _check_count(reconstruction_threshold,
                                                     "reconstruction_threshold")
        if isinstance(max_weight, bool) or not float(max_weight).is_integer() or max_weight < 1:
            raise ConfigError("max_weight must be a whole number >= 1 (an example count)")
        self.max_weight = int(max_weight)
        self.clipping_range = float(clipping_range)
        self.quantization_bits = bits_of_range(quantization_range, "quantization_range")
        self.modulus_bits = (None if modulus_range is None
                             else bits_of_range(modulus_range, "modulus_range"))
        if timeout is not None and not timeout > 0:
            raise ConfigError("timeout must be None or > 0 seconds")
        self.timeout = timeout
        try:
            self.graph = None if graph is None else GraphKind(graph)
            if mode is not None:
                Mode(mode)
        except ValueError:
            raise ConfigError(f"unknown graph {graph!r} or mode {mode!r}") from None
        if settings is not None:
            if settings.degree is not None or settings.threshold is not None:
                raise ConfigError("give the degree and threshold as Flower's num_shares and "
                                  "reconstruction_threshold, not in settings")
            if self.graph is None:
                self.graph = settings.graph
        #: the session choices; graph, degree and threshold are set per session from
        #: ``graph``, ``num_shares`` and ``reconstruction_threshold`` (see graph_params)
        self.settings = SessionSettings.build(
            settings, mode=mode, min_cohort=min_cohort, dropout_rate=dropout_rate,
            corruption_rate=corruption_rate,
        )
        if self.mode is Mode.ACTIVE:
            raise ConfigError(
                "active mode is not available over Flower yet: it needs long-term client "
                "identities bound to protocol ids, which Flower node ids do not provide"
            )
        self.secure_metrics = tuple(secure_metrics)
        self.metrics_range = float(metrics_range)
        self.weighted_by_key = weighted_by_key
        self.threads = threads
        #: each session's public transcript goes to this directory (spec §18.5)
        self.transcript_dir = transcript_dir
        if transcript_vectors not in (Vectors.FULL.value, Vectors.HASH.value):
            raise ConfigError("transcript_vectors must be 'full' or 'hash'")
        self.transcript_vectors = transcript_vectors
        if session_log is not None and transcript_dir is None:
            raise ConfigError("a session log needs transcript_dir")
        #: each session's transcript hash is appended to this signed log (spec §18.7)
        self.session_log = session_log
        #: every session's outcome, in order (for logs, tests and benchmarks)
        self.outcomes: list[FlowerRoundOutcome] = []
        if not isinstance(secure_evaluate, bool):
            raise ConfigError("secure_evaluate must be True or False")
        self.secure_evaluate = secure_evaluate
        self.evaluate_metrics = tuple(evaluate_metrics)
        self.params(max(self.min_cohort, 3))  # refuse bad clip, levels, metric keys now
        if dp is not None and self.secure_metrics:
            raise ConfigError("with distributed DP a client's vector is its clipped update "
                              "only: secure_metrics are not available")
        #: distributed DP: planning, decoding and accounting of training sessions (§21.12)
        self.dp = None if dp is None else ServerDP(dp)
        if secure_evaluate:
            self.params(max(self.min_cohort, 3), evaluate=True)

    # read-only views of the settings, kept for callers of the former attributes
    @property
    def mode(self) -> Mode:
        return self.settings.mode

    def __repr__(self) -> str:
        return (f"SecAggPlusWorkflow(num_shares={self.num_shares}, "
                f"reconstruction_threshold={self.reconstruction_threshold}, graph={self.graph})")

    # -- per-session parameters -------------------------------------------------------------
    def params(self, n: int, evaluate: bool = False, legacy: bool = True) -> SessionParams:
        """The session parameters for ``n`` sampled clients (ConfigError if unsafe); an
        evaluation session sums ``evaluate_metrics`` (after the ``loss`` of a legacy
        EvaluateRes) instead of the model's arrays and the training metrics."""
        keys = self.secure_metrics
        if evaluate:
            keys = ("loss", *self.evaluate_metrics) if legacy else self.evaluate_metrics
        bits = self.modulus_bits
        if bits is None:
            bits = safe_modulus_bits(bits=self.quantization_bits, max_clients=n,
                                     max_weight=self.max_weight)
        params = SessionParams(clip=self.clipping_range, bits=self.quantization_bits,
                               max_weight=self.max_weight, modulus_bits=bits,
                               metric_keys=keys,
                               metrics_range=self.metrics_range,
                               weight_key=self.weighted_by_key)
        params.quantization(n)  # a modulus the worst-case sum of n clients would wrap: refused
        return params

    def graph_params(self, n: int) -> tuple[GraphKind, int | None, int | None]:
        """(graph, degree, threshold) for ``n`` clients from Flower-style share counts."""
        shares: int | None = None
        if isinstance(self.num_shares, float):
            shares = round(self.num_shares * n)
            if shares < n and shares % 2 == 0:  # Flower's rule: odd, so the degree is even
                shares += 1
        elif self.num_shares is not None:
            shares = self.num_shares
            if shares < n and shares % 2 == 0:  # as Flower does: warn, then make it odd
                logger.warning("num_shares should be odd for SecAgg+; using %d", shares + 1)
                shares += 1
        complete = (shares is None and self.graph is not GraphKind.HARARY) or (
            shares is not None and shares >= n)
        if self.graph is GraphKind.HARARY and shares is not None and shares >= n:
            complete = True  # a Harary graph of degree n - 1 is the complete graph
        if self.graph is GraphKind.COMPLETE and shares is not None and shares < n:
            raise ConfigError(f"graph='complete' needs num_shares >= n = {n}")
        threshold: int | None = None
        base = n if complete else shares
        if isinstance(self.reconstruction_threshold, float):
            threshold = max(2, round(self.reconstruction_threshold * (base or n)))
        elif self.reconstruction_threshold is not None:
            threshold = self.reconstruction_threshold
        if complete:
            return GraphKind.COMPLETE, None, threshold
        degree = None if shares is None else shares - 1
        if (degree is None) != (threshold is None):
            raise ConfigError("for SecAgg+ give both num_shares and reconstruction_threshold, "
                              "or neither (then the parameter finder chooses)")
        return GraphKind.HARARY, degree, threshold

    def session_config(self, cohort: Sequence[int], dim: int, modulus: int, *,
                       round_index: int = 0, task_hash: bytes = bytes(32)) -> SessionConfig:
        """The session config for ``cohort``; a refused (num_shares, reconstruction_threshold)
        pair is refused with values that would work for this cohort (ConfigError)."""
        kind, degree, threshold = self.graph_params(len(cohort))

        def create(kind: GraphKind, degree: int | None, threshold: int | None,
                   check_memory: bool = True) -> SessionConfig:
            settings = replace(self.settings, graph=kind, degree=degree, threshold=threshold)
            return SessionConfig.create(cohort, dim, modulus, settings=settings,
                                        round_index=round_index, task_hash=task_hash,
                                        check_memory=check_memory)

        try:
            return create(kind, degree, threshold)
        except ConfigError as exc:
            if threshold is None:  # nothing of the user's to correct: the refusal stands
                raise
            hint = _working_values(kind, len(cohort), create)
            if hint is None:
                raise
            raise ConfigError(f"{exc}; {hint}") from None

    # -- the legacy strategy path -----------------------------------------------------------
    def __call__(self, grid: Grid, context: Context) -> None:
        """One fit round of a legacy strategy under secure aggregation."""
        context, current_round, parameters = _legacy_round(context)
        instructions = context.strategy.configure_fit(current_round, parameters,
                                                      context.client_manager)
        if not instructions:
            logger.info("configure_fit: no clients selected, round skipped")
            return
        proxies = {proxy.node_id: proxy for proxy, _ in instructions}
        contents = {proxy.node_id: compat.fitins_to_recorddict(fitins, True)
                    for proxy, fitins in instructions}
        outcome = self.run_session(grid, contents, server_round=current_round,
                                   message_type=MessageType.TRAIN, group_id=str(current_round))
        if outcome.aggregate is None:
            logger.warning("secure aggregation aborted in round %s: %s; the model is kept",
                           current_round, outcome.abort_reason)
            return
        agg = outcome.aggregate
        fitres = FitRes(Status(Code.OK, "secure aggregate"), ndarrays_to_parameters(agg.arrays),
                        agg.total_weight, dict(agg.metrics))
        failures: list[BaseException] = [ProtocolError(f) for f in outcome.failures]
        result = context.strategy.aggregate_fit(
            current_round, [(proxies[outcome.included[0]], fitres)], failures)  # type: ignore[arg-type]
        params_agg, metrics_agg = result
        if params_agg:
            context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
                params_agg, True)
            context.history.add_metrics_distributed_fit(  # with DP: its ε, whatever the strategy
                server_round=current_round, metrics={**metrics_agg, **(
                    agg.metrics if self.dp is not None else {})})

    # -- the legacy evaluation path -------------------------------------------------------
    def evaluate(self, grid: Grid, context: Context) -> None:
        """One evaluate round of a legacy strategy under secure aggregation:
        ``DefaultWorkflow(fit_workflow=wf, evaluate_workflow=wf.evaluate)`` (needs
        ``secure_evaluate=True``). The strategy's ``aggregate_evaluate`` gets one
        EvaluateRes: the secure weighted mean loss and ``evaluate_metrics``, the total
        example count of the included clients; no client's own result reaches it."""
        if not self.secure_evaluate:
            raise ConfigError("secure evaluation is off: construct the workflow with "
                              "secure_evaluate=True")
        context, current_round, parameters = _legacy_round(context)
        instructions = context.strategy.configure_evaluate(current_round, parameters,
                                                           context.client_manager)
        if not instructions:
            logger.info("configure_evaluate: no clients selected, evaluation skipped")
            return
        proxies = {proxy.node_id: proxy for proxy, _ in instructions}
        contents = {proxy.node_id: compat.evaluateins_to_recorddict(ins, True)
                    for proxy, ins in instructions}
        outcome = self.run_session(grid, contents, server_round=current_round,
                                   message_type=MessageType.EVALUATE,
                                   group_id=str(current_round))
        if outcome.aggregate is None:
            logger.warning("secure evaluation aborted in round %s: %s", current_round,
                           outcome.abort_reason)
            return
        metrics = dict(outcome.aggregate.metrics)
        loss = metrics.pop("loss")
        res = EvaluateRes(Status(Code.OK, "secure aggregate"), loss,
                          outcome.aggregate.total_weight, dict(metrics))
        failures: list[BaseException] = [ProtocolError(f) for f in outcome.failures]
        loss_agg, metrics_agg = context.strategy.aggregate_evaluate(
            current_round, [(proxies[outcome.included[0]], res)], failures)  # type: ignore[arg-type]
        if loss_agg is not None:
            context.history.add_loss_distributed(server_round=current_round, loss=loss_agg)
            context.history.add_metrics_distributed(server_round=current_round,
                                                    metrics=metrics_agg)

    # -- one session --------------------------------------------------------------------------
    def run_session(self, grid: Grid, contents: Mapping[int, FlowerRecordDict], *,
                    server_round: int, message_type: str = MessageType.TRAIN,
                    group_id: str = "") -> FlowerRoundOutcome:
        """Run one session with the nodes of ``contents`` (node id -> training instruction).

        Every instruction must carry the same global model. Raises ConfigError for
        a configuration that is unsafe for this sample; an abort is an outcome. The
        rounds are played by :class:`~secagg.session.SessionDriver`, as everywhere
        else; this adapter supplies the Flower channel, the failure log and the
        :meth:`_outgoing` hook.
        """
        nodes = sorted(contents)
        n = len(nodes)
        if n < 3:
            raise ConfigError(f"secure aggregation needs at least 3 clients, {n} sampled")
        ids = {node: i + 1 for i, node in enumerate(nodes)}
        evaluate = message_type.split(".")[0] == MessageType.EVALUATE
        if evaluate and not self.secure_evaluate:
            raise ConfigError("secure evaluation is off: construct the workflow with "
                              "secure_evaluate=True")
        params = self.params(n, evaluate, LEGACY_EVALUATE_PARAMETERS in contents[
            nodes[0]].array_records)
        hashes = {model_hash(model_record(contents[node])[1]) for node in nodes}
        if len(hashes) != 1:
            raise ConfigError("secure aggregation sums one model: every sampled client "
                              "must be sent the same global model")
        global_arrays, layout = ([], EVALUATE_LAYOUT) if evaluate else model_layout(
            model_record(contents[nodes[0]])[1])
        base_hash = task_hash(params, hashes.pop(), evaluate=evaluate)
        dp = None if evaluate else self._dp_session(list(ids.values()), global_arrays, layout,
                                                    server_round)
        if dp is None:
            config = self.session_config(list(ids.values()), params.dim(layout),
                                         params.quantization(n).modulus,
                                         round_index=server_round, task_hash=base_hash)
        else:
            config = self.session_config(list(ids.values()), dp.params.padded_dim,
                                         1 << dp.params.bits, round_index=server_round,
                                         task_hash=dp_task_hash(base_hash, dp.params))
        server = ServerProtocol(config, threads=self.threads)
        failures = _FailureLog({u: node for node, u in ids.items()})
        first: dict[str, ConfigRecordValues] = {RecordField.CONFIG: config.encode(),
                                                 **params.to_record()}
        if dp is not None:
            first.update(params_to_record(dp.params))
        channel = _FlowerChannel(grid, ids, contents, first, failures,
                                 message_type=message_type, group_id=group_id,
                                 timeout=self.timeout)
        observers: list[SessionObserver] = [failures]
        transcript = None if self.transcript_dir is None else open_session_transcript(
            self.transcript_dir, server_round, config, self.transcript_vectors)
        if transcript is not None:
            observers.append(TranscriptObserver(transcript))
        try:
            SessionDriver(server, {}, relay=_OutgoingHook(self), observers=observers,
                          channel=channel).run()
        finally:
            if transcript is not None:
                finish_transcript(transcript, server.result, server.abort_reason,
                                  config.modulus)
                if self.session_log is not None and transcript.path is not None:
                    self.session_log.append(config.session_id, transcript.path,
                                            transcript.sha256)
        outcome = self._outcome(server, nodes, failures, config, params, layout, dp)
        self.outcomes.append(outcome)
        for failure in outcome.failures:
            logger.warning("secure aggregation left out %s", failure)
        for line in outcome.late_dropouts:
            logger.warning("secure aggregation: %s", line)
        return outcome

    def _dp_session(self, cohort: list[int], global_arrays: list[np.ndarray], layout: Layout,
                    server_round: int) -> DPSession | None:
        """A training session's DP plan (None without DP); the floor from a probe config."""
        if self.dp is None:
            return None
        probe = self.session_config(cohort, self.dp.padded_dim(layout.size),
                                    1 << self.dp.options.bits, round_index=server_round)
        return self.dp.open(len(cohort), global_arrays, layout, probe)

    def _outcome(self, server: ServerProtocol, nodes: Sequence[int], failures: _FailureLog,
                 config: SessionConfig, params: SessionParams,
                 layout: Layout, dp: DPSession | None = None) -> FlowerRoundOutcome:
        """The finished (or aborted) session in node ids, the aggregate decoded."""
        result = server.result
        if server.state is not ServerState.DONE or result is None:
            return FlowerRoundOutcome(None, (), tuple(nodes), server.abort_reason,
                                      failures.lines(), config,
                                      dp=None if dp is None or self.dp is None
                                      else self.dp.report(dp, 0, None))
        included = tuple(failures.node_of[u] for u in result.included)
        if dp is not None and self.dp is not None:
            aggregate, reason = self.dp.decode(dp, result.sum, len(included),
                                               config.session_id, config.round_index)
            if aggregate is None:
                return FlowerRoundOutcome(None, (), tuple(nodes), reason, failures.lines(),
                                          config, dp=dp.report)
        else:
            aggregate = decode_aggregate(result.sum, params, layout, len(nodes),
                                         len(result.included))
        dropped = tuple(sorted(set(nodes) - set(included)))
        logger.info("secure aggregation: %d of %d clients included, total weight %d",
                    len(included), len(nodes), aggregate.total_weight)
        return FlowerRoundOutcome(aggregate, included, dropped, None,
                                  failures.lines(exclude=included), config,
                                  failures.lines(only=included),
                                  None if dp is None else dp.report)

    def _outgoing(self, stage: Stage, client_id: int, message: ProtocolMessage
                  ) -> ProtocolMessage:
        """The server message for ``client_id`` after ``stage`` closed.

        An override point for attack tests (a malicious server changes what it
        sends here); the honest workflow sends what the protocol computed.
        """
        del stage, client_id
        return message


class _OutgoingHook(Relay):
    """The driver's relay for the workflow: every message but an Abort passes through
    :meth:`SecAggPlusWorkflow._outgoing` (the attack tests' override point)."""

    def __init__(self, workflow: SecAggPlusWorkflow) -> None:
        self.workflow = workflow

    def download(self, round: Round, honest: Mapping[int, ServerMessage]
                 ) -> Iterable[tuple[int, bytes]]:
        stage = Stage.of(round)
        return [(u, (m if isinstance(m, Abort)
                     else self.workflow._outgoing(stage, u, m)).encode())
                for u, m in sorted(honest.items())]


class _FailureLog(SessionObserver):
    """Why each node was left out, one line each, in order: for the logs and the
    strategy's failure list. The channel notes transport failures (error replies,
    unusable or missing replies); the driver reports the server's refusals."""

    def __init__(self, node_of: Mapping[int, int]) -> None:
        self.node_of = node_of
        self.entries: list[tuple[int, Stage, str]] = []
        self.failed: set[int] = set()

    def note(self, node: int, stage: Stage, reason: str) -> None:
        self.failed.add(node)
        self.entries.append((node, stage, reason))

    def lines(self, *, exclude: Iterable[int] = (), only: Iterable[int] | None = None
              ) -> tuple[str, ...]:
        """One line per failure, in order. A node whose input is in the sum (``only``:
        the included nodes) can only have failed at the unmask stage, after its masked
        input arrived: its line says so instead of calling it left out."""
        skip, keep = set(exclude), None if only is None else set(only)
        out = []
        for node, stage, reason in self.entries:
            if node in skip or (keep is not None and node not in keep):
                continue
            if keep is None:
                out.append(f"node {node} at {stage.value}: {reason}")
            else:
                out.append(f"node {node} dropped at {stage.value}; its input is in the sum "
                           f"(its masks removed via its neighbours' shares): {reason}")
        return tuple(out)

    def on_server_refusal(self, round: Round, client_id: int, error: ProtocolError) -> None:
        self.note(self.node_of[client_id], Stage.of(round), f"refused: {error}")


class _FlowerChannel(ClientChannel):
    """The driver's client channel over a Flower grid: one ``send_and_receive`` per stage.

    The first stage carries the session config and parameters; the masked-input
    stage carries the strategy's training instruction (the mod trains there).
    Aborts for clients the server left out travel with the next stage's batch
    (no extra round trip); when no stage follows they are sent at once. Node
    ids authenticate the replies (Flower's SuperLink binds them), so the driver
    refuses a reply that names another client.
    """

    authenticated = True

    def __init__(self, grid: Grid, ids: Mapping[int, int],
                 contents: Mapping[int, FlowerRecordDict],
                 first: Mapping[str, ConfigRecordValues],
                 failures: _FailureLog, *, message_type: str, group_id: str,
                 timeout: float | None) -> None:
        self.grid = grid
        self.ids = ids
        self.contents = contents
        self.first = first
        self.failures = failures
        self.message_type = message_type
        self.group_id = group_id
        self.timeout = timeout
        self.pending_aborts: dict[int, bytes] = {}

    def open(self, driver: SessionDriver, round: Round, client_ids: Sequence[int]) -> None:
        node_of = self.failures.node_of
        self._exchange(driver, round, {node_of[u]: None for u in client_ids})

    def deliver(self, driver: SessionDriver, round: Round, following: Round | None,
                items: Iterable[tuple[int, bytes]]) -> None:
        node_of = self.failures.node_of
        outgoing: dict[int, bytes] = {}
        for u, data in items:
            if following is not None and _is_abort(data):
                self.pending_aborts[node_of[u]] = data
            else:
                outgoing[node_of[u]] = data
        if following is None:  # nothing follows: everything goes now, as the abort stage
            self.pending_aborts.update(outgoing)
            outgoing = {}
        if outgoing or self.pending_aborts:
            self._exchange(driver, following, outgoing)

    def _exchange(self, driver: SessionDriver, round: Round | None,
                  outgoing: Mapping[int, bytes | None]) -> None:
        """One batch: the pending aborts, then ``round``'s stage to ``outgoing`` (node ->
        server message, None in the first stage); each usable reply goes to the driver."""
        stage = Stage.ABORT if round is None else Stage.of(round)
        messages = [self._message(node, Stage.ABORT, raw)
                    for node, raw in self.pending_aborts.items()]
        self.pending_aborts.clear()
        messages += [self._message(node, stage, raw) for node, raw in outgoing.items()]
        replies = self.grid.send_and_receive(messages, timeout=self.timeout)
        if round is None:
            return
        wanted = set(outgoing)
        got: set[int] = set()
        for reply in replies:
            node = reply.metadata.src_node_id
            if node not in wanted or node in got:
                continue
            data = self._payload(reply, node, stage)
            if data is not None:
                got.add(node)
                driver.post_bytes(round, self.ids[node], data)
        for node in sorted(wanted - got):
            if node not in self.failures.failed:
                self.failures.note(node, stage, "no reply")

    def _message(self, node: int, stage: Stage, raw: bytes | None) -> Message:
        fields: dict[str, ConfigRecordValues] = {RecordField.STAGE: stage.value}
        if raw is not None:
            fields[RecordField.MESSAGE] = raw
        if stage is Stage.ADVERTISE_KEYS:
            fields.update(self.first)
            fields[RecordField.CLIENT_ID] = self.ids[node]
        content = FlowerRecordDict()
        if stage is Stage.MASKED_INPUT:
            content = FlowerRecordDict(dict(self.contents[node].items()))  # shallow: keep theirs
        content.config_records[RECORD_KEY] = ConfigRecord(fields)
        return Message(content, dst_node_id=node, message_type=self.message_type,
                       group_id=self.group_id)

    def _payload(self, reply: Message, node: int, stage: Stage) -> bytes | None:
        """The protocol message of a node's reply; None (failure noted) for an error
        reply or one that is not this stage's."""
        if reply.has_error():
            self.failures.note(node, stage, str(reply.error.reason))
            return None
        record = reply.content.config_records.get(RECORD_KEY)
        try:
            if record is None or get_field(record, RecordField.STAGE, str) != stage.value:
                raise ProtocolError("reply is not for this stage")
            return get_field(record, RecordField.MESSAGE, bytes)
        except ProtocolError as exc:
            self.failures.note(node, stage, str(exc))
            return None


def _is_abort(data: bytes) -> bool:
    """Whether encoded server message ``data`` is an Abort, from its header alone
    (magic, version, type: spec §7.2), so a KeyBroadcast is not decoded to be routed."""
    return len(data) > _TYPE_OFFSET and data[_TYPE_OFFSET] == WireType.ABORT


class SecAggGrid(Grid):
    """A Grid for message-API strategies whose training rounds are securely aggregated.

    ``strategy.start(grid=SecAggGrid(grid, SecAggPlusWorkflow(...)), ...)``: every
    ``send_and_receive`` of training messages runs one session with their
    destinations and returns one reply (to the lowest included node's message)
    holding the aggregate ArrayRecord and a MetricRecord with the total weight
    under ``weighted_by_key`` and the secure means of ``secure_metrics``; a
    weighted-average strategy then reproduces exactly that aggregate. An aborted
    session returns no reply (the strategy keeps its model). Everything else
    (evaluation, queries, node listing) goes to the wrapped grid unchanged.
    """

    def __init__(self, grid: Grid, workflow: SecAggPlusWorkflow) -> None:
        self.inner = grid
        self.workflow = workflow
        self._round = 0

    # -- the wrapped Grid API -------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(self, content: FlowerRecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        return self.inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        batch = list(messages)
        if any(_is_train(m) for m in batch):
            raise ProtocolError("training messages must go through send_and_receive, which "
                                "aggregates them securely")
        return self.inner.push_messages(batch)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def _secured(self, message: Message) -> bool:
        """Training messages always; evaluation ones when the workflow's secure_evaluate."""
        return _is_train(message) or (self.workflow.secure_evaluate and _is_evaluate(message))

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        batch = list(messages)
        if not batch or not any(self._secured(m) for m in batch):
            return self.inner.send_and_receive(batch, timeout=timeout)
        kind = batch[0].metadata.message_type.split(".")[0]
        if not all(m.metadata.message_type.split(".")[0] == kind for m in batch):
            raise ProtocolError("a batch may not mix training and other messages")
        by_node = {m.metadata.dst_node_id: m for m in batch}
        if len(by_node) != len(batch):
            raise ProtocolError("one training message per node")
        self._round += 1
        server_round = _server_round(batch[0].content, self._round)
        outcome = self.workflow.run_session(  # the protocol's own exchanges bypass this wrapper
            self.inner, {node: m.content for node, m in by_node.items()}, server_round=server_round,
            message_type=batch[0].metadata.message_type, group_id=batch[0].metadata.group_id)
        if outcome.aggregate is None:
            return []
        agg = outcome.aggregate
        metrics = MetricRecord({self.workflow.weighted_by_key: agg.total_weight, **agg.metrics})
        reply_to = by_node[outcome.included[0]]
        if kind == MessageType.EVALUATE:  # the secure means of the loss and metrics only
            return [Message(FlowerRecordDict({"metrics": metrics}), reply_to=reply_to)]
        name, model = model_record(batch[0].content)
        arrays = ArrayRecord(dict(zip(model.keys(), (Array(a) for a in agg.arrays),
                                      strict=True)))
        return [Message(FlowerRecordDict({name: arrays, "metrics": metrics}),
                        reply_to=reply_to)]


def _is_train(message: Message) -> bool:
    return message.metadata.message_type.split(".")[0] == MessageType.TRAIN


def _is_evaluate(message: Message) -> bool:
    return message.metadata.message_type.split(".")[0] == MessageType.EVALUATE


def _server_round(content: FlowerRecordDict, fallback: int) -> int:
    """The strategy's ``server-round`` from the training config, else a counter."""
    for record in content.config_records.values():
        value = record.get("server-round")
        if is_plain_int(value) and value >= 0:
            return value
    return fallback


def _working_values(kind: GraphKind, n: int, create: Callable[..., SessionConfig],
                    fallback: bool = False) -> str | None:
    """Flower-style values that pass the very checks that refused the user's: the
    parameter finder's (k, t) for this cohort and rates (spec §6), and the thresholds
    above its t that the same checks still accept (they form a range, §6.3). None when
    even those are refused (e.g. a cohort below min_cohort): the refusal then stands.
    """
    try:
        found = create(kind, None, None, False)
    except ConfigError:
        if kind is GraphKind.COMPLETE:
            return None
        return _working_values(GraphKind.COMPLETE, n, create, fallback=True)
    k, t = found.degree, found.threshold
    top = t
    for candidate in range(t + 1, min(k, t + 64) + 1):
        try:
            create(found.graph, None if found.graph is GraphKind.COMPLETE else k, candidate,
                   False)
        except ConfigError:
            break
        top = candidate
    thresholds = str(t) if top == t else f"{t} to {top}"
    if found.graph is GraphKind.COMPLETE:
        why = "no SecAgg+ graph is safe at these rates: use the complete graph, " if fallback \
            else ""
        return (f"for n = {n} clients {why}num_shares >= {n} (or None) with "
                f"reconstruction_threshold {thresholds} would work")
    return (f"for n = {n} clients at these rates num_shares={k + 1} with "
            f"reconstruction_threshold {thresholds} would work (the SecAgg+ parameter "
            "finder's choice; or leave both None to let it choose every round)")


def _check_count(value: int | float | None, name: str) -> int | float | None:
    if value is None:
        return None
    if not is_plain_number(value):
        raise ConfigError(f"{name} must be an int, a float fraction or None")
    if isinstance(value, float) and not 0 < value <= 1:
        raise ConfigError(f"{name} as a fraction must be in (0, 1]")
    if isinstance(value, int) and value < 2:
        raise ConfigError(f"{name} must be at least 2")
    return value


def _legacy_round(context: Context) -> tuple[LegacyContext, int, Parameters]:
    """A legacy strategy's context, its current round and global parameters."""
    if not isinstance(context, LegacyContext):
        raise TypeError(f"expected a LegacyContext, got {type(context).__name__}")
    cfg = context.state.config_records[MAIN_CONFIGS_RECORD]
    current_round = cast(int, cfg[WorkflowKey.CURRENT_ROUND])
    parameters = compat.arrayrecord_to_parameters(
        context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
    return context, current_round, parameters
