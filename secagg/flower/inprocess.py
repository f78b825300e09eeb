"""Run a Flower ``ServerApp`` against ``ClientApp`` nodes in this process, without Ray.

Flower 1.42's simulation engine (``flwr run`` / ``run_simulation``) always runs
the ClientApps on Ray (the ``flwr[simulation]`` extra): a heavy install and
seconds of start-up per run. For tests, CI and quick experiments this module
drives the very same ``ServerApp`` and ``ClientApp`` objects through Flower's
lowest public seam, the :class:`flwr.serverapp.Grid` a ServerApp talks to:

* every message is stamped with an id and encoded to Flower's protobuf wire
  form and decoded again in each direction, as a real transport would (so a
  mod only ever sees its own copy);
* each node keeps one ``Context`` for the run, as a SuperNode does;
* an exception in a ClientApp becomes an error reply, as in Flower's runtime;
* a ``drop`` rule makes a node go silent instead of answering a given
  message, which a server sees exactly like a timeout (the rule decides per
  message, so a phone that went offline in one round may be back in the next).

Nodes are run one after another (deterministic, no threads). The ServerApp
code is unchanged: legacy ``server_fn`` apps and ``@app.main()`` apps alike.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.app.user_config import UserConfig
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage  # pylint: disable=no-name-in-module
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from secagg.checks import is_plain_int
from secagg.errors import ConfigError

#: (node id, partition id, message) -> True if the node stays silent instead of answering
DropRule = Callable[[int, int, Message], bool]


def _wire_copy(message: Message) -> tuple[Message, int]:
    """The message as the other side decodes it from Flower's protobuf bytes, and their size."""
    data = message_to_proto(message).SerializeToString()
    return message_from_proto(ProtoMessage.FromString(data)), len(data)


def _stamp(message: Message) -> None:
    """Give a message the id a SuperLink would (Flower's in-memory grid does the same)."""
    message.metadata.__dict__["_message_id"] = str(uuid4())


class InProcessGrid(Grid):
    """A Grid whose nodes are ``client_app`` instances in this process.

    Node ids are random 63-bit integers (seeded), like Flower's; node ``i`` of
    ``num_nodes`` gets ``node_config = {"partition-id": i, "num-partitions": n}``,
    the convention of Flower's simulation engine. ``bytes_down`` / ``bytes_up``
    count the protobuf bytes per node.
    """

    def __init__(self, client_app: ClientApp, num_nodes: int, *, run_id: int = 1,
                 seed: int = 0, run_config: UserConfig | None = None,
                 drop: DropRule | None = None) -> None:
        if not is_plain_int(num_nodes) or num_nodes < 1:
            raise ConfigError("num_nodes must be a positive int")
        rng = random.Random(seed)  # noqa: S311  (node ids are public labels, not secrets)
        node_ids: list[int] = []
        while len(node_ids) < num_nodes:
            node = rng.getrandbits(63)
            if node > SUPERLINK_NODE_ID and node not in node_ids:
                node_ids.append(node)
        self.client_app = client_app
        self.partition = {node: i for i, node in enumerate(node_ids)}
        self.contexts = {
            node: Context(run_id=run_id, node_id=node,
                          node_config={"partition-id": i, "num-partitions": num_nodes},
                          state=RecordDict(), run_config=dict(run_config or {}))
            for node, i in self.partition.items()
        }
        self.drop = drop
        #: (node id, message type, group id) of every message left unanswered by ``drop``
        self.silenced: list[tuple[int, str, str]] = []
        self.bytes_down: dict[int, int] = dict.fromkeys(node_ids, 0)
        self.bytes_up: dict[int, int] = dict.fromkeys(node_ids, 0)
        self._run = Run.create_empty(run_id)
        self._replies: dict[str, Message] = {}

    # -- Grid API ---------------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.partition)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            _stamp(message)
            ids.append(message.metadata.message_id)
            reply = self._deliver(message)
            if reply is not None:
                self._replies[message.metadata.message_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        """Deliver each message and return the replies of the nodes still there.

        ``timeout`` needs no waiting here: a node either answers at once or is gone.
        """
        del timeout
        return list(self.pull_messages(list(self.push_messages(messages))))

    # -- one node ---------------------------------------------------------------------------
    def _deliver(self, message: Message) -> Message | None:
        node = message.metadata.dst_node_id
        if node not in self.partition:
            raise ConfigError(f"no node {node} in this federation")
        incoming, size = _wire_copy(message)
        self.bytes_down[node] += size
        if self.drop is not None and self.drop(node, self.partition[node], incoming):
            self.silenced.append((node, incoming.metadata.message_type,
                                  incoming.metadata.group_id))
            return None
        try:
            reply = self.client_app(incoming, self.contexts[node])
        except Exception as exc:
            reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                                  reason=f"{type(exc).__name__}: {exc}"), reply_to=incoming)
        _stamp(reply)
        out, size = _wire_copy(reply)
        self.bytes_up[node] += size
        return out


def run_inprocess(server_app: ServerApp, client_app: ClientApp, num_supernodes: int, *,
                  run_config: UserConfig | None = None, seed: int = 0,
                  drop: DropRule | None = None) -> tuple[Context, InProcessGrid]:
    """Run ``server_app`` to completion against ``num_supernodes`` in-process nodes.

    Returns the server's Context (its ``state`` holds what the app left there)
    and the grid (nodes, their contexts, byte counts, silenced messages).
    """
    run_id = random.Random(seed).getrandbits(63) or 1  # noqa: S311  (a public label)
    # What a ServerApp process gets from its runtime: the identity stamped on messages.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, SUPERLINK_NODE_ID, 1
    grid = InProcessGrid(client_app, num_supernodes, run_id=run_id, seed=seed,
                         run_config=run_config, drop=drop)
    context = Context(run_id=run_id, node_id=SUPERLINK_NODE_ID, node_config={},
                      state=RecordDict(), run_config=dict(run_config or {}))
    server_app(grid, context)
    return context, grid
