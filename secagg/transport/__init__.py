"""gRPC transport: real server and client processes with mTLS, deadlines and dropouts.

The protocol core (:mod:`secagg.client`, :mod:`secagg.server`) is sans-IO; this
package moves its canonical messages between one server process and many client
processes (spec §17). Modules:

* :mod:`~secagg.transport.server`: :class:`TransportServer`, gRPC lifecycle and the thin
  servicer that identifies each caller;
* :mod:`~secagg.transport.gate`: the upload gate (per-certificate call caps, call
  deadlines, upload slots, chunk reassembly; spec §17.5);
* :mod:`~secagg.transport.rounds_driver`: the round driver (cohort wait, round deadlines,
  each session's outcome);
* :mod:`~secagg.transport.settings`: :class:`ServerSettings`, :class:`SessionOutcome`;
* :mod:`~secagg.transport.client`: :class:`TransportClient`, one client's main loop;
* :mod:`~secagg.transport.certs`: development CA and client identity from certificates;
* :mod:`~secagg.transport.framing`: chunking and explicit size limits;
* :mod:`~secagg.transport.local`: start real processes on 127.0.0.1 (tests, simulations);
* :mod:`~secagg.transport.dropout`: the harness's client that SIGKILLs itself at a round;
* ``secagg_pb2*.py``: stubs generated from ``secagg.proto`` (see their header).

Nothing is imported here, so ``import secagg`` does not pull in gRPC.
"""
