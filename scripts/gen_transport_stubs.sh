#!/usr/bin/env bash
# Regenerate secagg/transport/secagg_pb2.py, secagg_pb2.pyi and secagg_pb2_grpc.py.
#
# Why a pinned, old grpcio-tools in a throw-away venv: users install secagg next
# to flwr 1.42, which pins protobuf < 7. grpcio-tools 1.85 emits protobuf-7
# gencode, which refuses to import under protobuf 6. grpcio-tools 1.71.2 emits
# protobuf 5.29 gencode, which imports under protobuf 5.29+, 6.x and 7.x
# (checked by scripts/check_protobuf_compat.sh). grpcio-tools is never a
# runtime dependency.
#
# Usage: scripts/gen_transport_stubs.sh   (from anywhere; needs python3 and a package index)
set -euo pipefail
TOOLS_VERSION=1.71.2
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet "grpcio-tools==$TOOLS_VERSION"
cd "$root"
"$tmp/venv/bin/python" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \
    --grpc_python_out=. secagg/transport/secagg.proto
header="# Generated from secagg/transport/secagg.proto by scripts/gen_transport_stubs.sh
# (grpcio-tools $TOOLS_VERSION, protobuf 5.29 gencode: imports under protobuf >= 5.29, 6.x, 7.x).
# Do not edit; regenerate instead.
# ruff: noqa"
for f in secagg/transport/secagg_pb2.py secagg/transport/secagg_pb2.pyi \
         secagg/transport/secagg_pb2_grpc.py; do
    { printf '%s\n' "$header"; cat "$f"; } > "$tmp/stub" && mv "$tmp/stub" "$f"
done
echo "regenerated stubs with grpcio-tools $TOOLS_VERSION"
