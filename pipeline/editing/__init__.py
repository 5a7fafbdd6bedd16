"""Classifier editing by rewriting a layer's key → value memory (Santurkar et al. 2021).

Modules (imported explicitly, so ``metrics`` stays usable without loading torch):

* :mod:`~pipeline.editing.layers` — resolve a layer, keys / values, hooks, weight overrides;
* :mod:`~pipeline.editing.exemplars` — :class:`EditExemplars` and their keys at a layer;
* :mod:`~pipeline.editing.covariance` — streamed ``C = E[k kᵀ]``, cache, safe inverse;
* :mod:`~pipeline.editing.rewrite` — rank-one / multi-key / gradient rewrite math;
* :mod:`~pipeline.editing.finetune` — fine-tuning baselines;
* :mod:`~pipeline.editing.methods` — one class per method (``Rewrite``, ``RewriteClosed``,
  ``RewriteMultiKey``, ``FinetuneLocal``, ``FinetuneGlobal``), ``method.edit(model, layer,
  case)``, the registry by name;
* :mod:`~pipeline.editing.delta` — :class:`EditResult`, save / load / apply / revert / stack;
* :mod:`~pipeline.editing.metrics` — errors corrected, accuracy drop, SR / GR / LR, per case;
* :mod:`~pipeline.editing.build_images`, :mod:`~pipeline.editing.masks`,
  :mod:`~pipeline.editing.predict` — a build's images as items, masks in the classifier's
  geometry, batched prediction;
* :mod:`~pipeline.editing.select`, :mod:`~pipeline.editing.evaluate`,
  :mod:`~pipeline.editing.runner` — hyper-parameters at matched cost, an edit scored on a
  case, every method on every case of a build.
"""
