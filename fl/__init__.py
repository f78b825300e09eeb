"""fl: a federated-averaging trainer built on secagg (added by a later issue)."""
