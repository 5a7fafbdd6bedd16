"""Classifier editing by rewriting a layer's key → value memory (Santurkar et al. 2021).

Modules (imported explicitly, so ``metrics`` stays usable without loading torch):

* :mod:`~pipeline.editing.layers` — resolve a layer, keys / values, hooks, weight overrides;
* :mod:`~pipeline.editing.exemplars` — :class:`EditExemplars` and their keys at a layer;
* :mod:`~pipeline.editing.covariance` — streamed ``C = E[k kᵀ]``, cache, safe inverse;
* :mod:`~pipeline.editing.rewrite` — rank-one / multi-key / gradient rewrite math;
* :mod:`~pipeline.editing.finetune` — fine-tuning baselines;
* :mod:`~pipeline.editing.methods` — ``edit(model, layer_name, exemplars, config)``, registry;
* :mod:`~pipeline.editing.delta` — :class:`EditResult`, save / load / apply / revert / stack;
* :mod:`~pipeline.editing.metrics` — errors corrected, accuracy drop, SR / GR / LR.
"""
