"""Privacy attacks against what a server holds: one update, the secure sum, the DP sum.

- :mod:`fl.privacy.updates`: client updates and the three views (``individual``,
  ``aggregate`` by a real secure-aggregation session, ``aggregate_dp``);
- :mod:`fl.privacy.noise`: the pluggable integer noise of the DP view;
- :mod:`fl.privacy.inversion`: Inverting Gradients + iDLG labels, the "recovered" metric;
- :mod:`fl.privacy.membership`: offline-LiRA membership inference, AUC and TPR at 1% FPR;
- :mod:`fl.privacy.experiments`: the experiments behind ``secagg attack``;
- :mod:`fl.privacy.plots`, :mod:`fl.privacy.cli`: pictures and the command.

Needs PyTorch (the ``torch`` extra); importing this package alone does not.
"""
