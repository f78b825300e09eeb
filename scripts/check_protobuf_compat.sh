#!/usr/bin/env bash
# Check that the committed gRPC stubs import and round-trip a message under each
# protobuf major version users may have: 5.x, 6.x (what flwr 1.42 allows: < 7)
# and 7.x. Each version gets a throw-away venv with only protobuf and grpcio.
#
# Usage: scripts/check_protobuf_compat.sh [PROTOBUF_SPEC ...]
#   default specs: "protobuf>=5.29,<6" "protobuf>=6,<7" "protobuf>=7,<8"
#   GRPCIO_SPEC (default "grpcio") picks the grpcio to pair them with, e.g. "grpcio==1.71.2".
# Exit status 0 only if every version passes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [ "$#" -eq 0 ]; then
    set -- "protobuf>=5.29,<6" "protobuf>=6,<7" "protobuf>=7,<8"
fi
# Only the transport package's stubs are copied: the check must not depend on
# numpy/numba, and secagg/transport/__init__.py is replaced by an empty one.
mkdir -p "$tmp/src/secagg/transport"
touch "$tmp/src/secagg/__init__.py" "$tmp/src/secagg/transport/__init__.py"
cp "$root"/secagg/transport/secagg_pb2.py "$root"/secagg/transport/secagg_pb2_grpc.py \
   "$tmp/src/secagg/transport/"
status=0
i=0
for spec in "$@"; do
    i=$((i + 1))
    venv="$tmp/venv$i"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "$spec" "${GRPCIO_SPEC:-grpcio}"
    if (cd "$tmp/src" && "$venv/bin/python" -W error - <<'PY'
import google.protobuf
import grpc
from secagg.transport import secagg_pb2 as pb
from secagg.transport import secagg_pb2_grpc as pbg
env = pb.ServerEnvelope(chunk=pb.Chunk(session_id=b"s" * 32, round=3, total_length=3, data=b"abc"))
back = pb.ServerEnvelope.FromString(env.SerializeToString())
assert back.WhichOneof("body") == "chunk" and back.chunk.data == b"abc"
assert pbg.AggregatorStub and pbg.add_AggregatorServicer_to_server
print(f"ok: protobuf {google.protobuf.__version__}, grpcio {grpc.__version__}")
PY
    ); then :; else
        echo "FAILED: $spec" >&2
        status=1
    fi
done
exit $status
