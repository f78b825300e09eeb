"""gRPC transport: real server and client processes with mTLS, deadlines and dropouts.

The protocol core (:mod:`secagg.client`, :mod:`secagg.server`) is sans-IO; this
package moves its canonical messages between one server process and many client
processes (spec §17). Modules:

* :mod:`~secagg.transport.server`: :class:`TransportServer`, the service and the
  session driver (cohort, rounds, deadlines, dropouts);
* :mod:`~secagg.transport.client`: :class:`TransportClient`, one client's main loop;
* :mod:`~secagg.transport.certs`: development CA and client identity from certificates;
* :mod:`~secagg.transport.framing`: chunking and explicit size limits;
* :mod:`~secagg.transport.local`: start real processes on 127.0.0.1 (tests, simulations);
* ``secagg_pb2*.py``: stubs generated from ``secagg.proto`` (see their header).

Nothing is imported here, so ``import secagg`` does not pull in gRPC.
"""
