"""Distributed differential privacy on top of secure aggregation (spec §21).

Each client clips, rotates, scales, rounds and adds a share of exact integer
noise (discrete Gaussian or Skellam) drawn from the OS CSPRNG, then wraps into
Z_{2^B}; the server sums with the unchanged secure-aggregation protocol and
decodes. The accountant charges each round with the noise actually summed.
"""
