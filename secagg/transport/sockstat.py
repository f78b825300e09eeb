"""Bytes on the wire of this process's TCP connections (Linux ``TCP_INFO``).

gRPC's sockets live inside its C core, so Python never sees the bytes that TLS,
HTTP/2 framing and protobuf add around a protocol message. The kernel does:
``tcpi_bytes_acked`` and ``tcpi_bytes_received`` count the TCP payload of each
connection. Reading them for every socket of this process that talks to the
server's port gives the real cost per session, without a proxy in the path.

Where the information is not available (not Linux, an old kernel, no /proc)
:func:`tcp_bytes` returns None and callers report the canonical message sizes only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import sys

# struct tcp_info (linux/tcp.h): tcpi_bytes_acked at 120, tcpi_bytes_received at 128
_ACKED_OFFSET = 120
_RECEIVED_OFFSET = 128
_INFO_LEN = 136


def tcp_bytes(peer_port: int | None = None, local_port: int | None = None
              ) -> tuple[int, int] | None:
    """(sent, received) TCP payload bytes summed over this process's matching sockets.

    A socket matches when its peer port is ``peer_port`` (client side) or its
    local port is ``local_port`` (server side). Closed sockets are not counted.
    """
    if not sys.platform.startswith("linux") or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    sent = received = 0
    for name in fds:
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
        except (ValueError, OSError):
            continue
        counts = _socket_counts(fd, peer_port, local_port)
        if counts is None:
            continue
        if counts == (-1, -1):
            return None
        sent += counts[0]
        received += counts[1]
    return sent, received


def _socket_counts(fd: int, peer_port: int | None, local_port: int | None
                   ) -> tuple[int, int] | None:
    try:
        # socket(fileno=) detects family and type from the descriptor; we own only the dup
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        if s.type != socket.SOCK_STREAM or s.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        peer, local = s.getpeername(), s.getsockname()
        if peer_port is not None and peer[1] != peer_port:
            return None
        if local_port is not None and local[1] != local_port:
            return None
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        if len(info) < _INFO_LEN:
            return -1, -1  # kernel too old to report byte counts
        acked = struct.unpack_from("=Q", info, _ACKED_OFFSET)[0]
        recv = struct.unpack_from("=Q", info, _RECEIVED_OFFSET)[0]
        return acked, recv
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            s.close()
