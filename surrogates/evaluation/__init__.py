"""Evaluation: the platform's metrics over a dataset split or over rollouts, and the reports written from them.

- :mod:`~surrogates.evaluation.dataset`: any predictor (a neural surrogate, a reduced model, a solver)
  on a dataset split, per-sample metrics of :data:`surrogates.metrics.METRICS` (:func:`evaluate_dataset`);
- :mod:`~surrogates.evaluation.rollouts`: one-step models rolled out on reference trajectories
  (:func:`evaluate_rollouts`), and the report of ``surrogates-evaluate`` on rollout checkpoints
  (:func:`report_rollouts`: ``metrics.json`` and figures).

Layering: evaluation sits beside ``tasks``; ``cli`` and ``serve`` may use it; it uses ``metrics``, ``data``
and ``plots``. Predictors arrive as objects or callables, so nothing here loads a checkpoint.

Nothing is imported here: evaluating a dataset does not import the rollout machinery (nor Lightning,
which the autoregressive data module brings); import from the submodules.
"""
