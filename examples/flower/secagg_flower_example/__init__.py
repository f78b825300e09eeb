"""A Flower app whose training rounds are securely aggregated by secagg (see README.md)."""
