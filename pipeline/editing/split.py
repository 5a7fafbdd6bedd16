"""A model cut at the edited layer: the part before it runs once per image, the rest per edit.

An edit at layer ``L`` (and fine-tuning of ``L`` and everything after it) cannot change what the
network computes *before* ``L``. :class:`SplitModel` traces the model with ``torch.fx`` into a
graph, cuts it just before the first call of ``L``, and caches the values that cross the cut
(the *frontier*: ``L``'s input, plus any tensor a later node still needs, such as a residual
shortcut) per image row, keyed by the row's pixel content. Evaluating many edits of one layer on
the same images, or running the fine-tuning baselines for hundreds of steps on the same
exemplars, then costs only the suffix of the network (for a late layer of EfficientNet-Lite0,
about 3% of a full forward pass).

The wrapper is a drop-in ``nn.Module`` for the editing code: it registers the original model's
children, parameters and buffers under the same names (the very same objects), so
``get_parameter``, ``functional_call`` (fine-tuning), forward hooks on the layer (key
collection) and in-place edits (:func:`pipeline.editing.delta.apply`) all act on the original
model and are seen by the traced graph, which fetches modules by name at run time.

The cache is only used when it is exact: in eval mode, for inputs that do not require grad, and
keyed by the identity and version counter of every parameter and buffer the prefix reads (an
in-place change or a ``functional_call`` replacement of any of them misses the cache). A model
that cannot be traced, or whose split output differs from its own forward on a probe input,
gives ``None`` from :meth:`SplitModel.create`: callers then use the model as is.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

import torch
from torch import Tensor, fx, nn

Frontier = tuple[Tensor, ...]


class _LeafTracer(fx.Tracer):
    """Every module that owns parameters or buffers is a leaf (besides torch.nn's own).

    Parameters are then only read inside ``call_module`` nodes of shared module objects, so
    replacing them (``functional_call``) or editing them in place is seen by the graph.
    """

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if super().is_leaf_module(m, module_qualified_name):
            return True
        direct = list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
        return bool(direct) and not isinstance(m, nn.Sequential | nn.ModuleList | nn.ModuleDict)


class _Cut(Exception):
    """Raised by the prefix interpreter when it reaches the cut node."""


class _PrefixInterpreter(fx.Interpreter):
    def __init__(self, module: nn.Module, graph: fx.Graph, cut: fx.Node) -> None:
        super().__init__(module, garbage_collect_values=True, graph=graph)
        self.extra_traceback = False
        self._cut_node = cut

    def run_node(self, n: fx.Node) -> Any:
        if n is self._cut_node:
            raise _Cut
        return super().run_node(n)


def _storage_ptr(tensor: Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _row_digest(row: Tensor) -> str:
    data = row.detach().contiguous().cpu()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{data.dtype}:{tuple(data.shape)}:".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class SplitModel(nn.Module):
    """``model`` as prefix (cached per image row) → suffix, cut before ``layer_name``.

    Use :meth:`create` (it verifies the split and returns ``None`` when it is not possible).
    ``max_cache_bytes`` bounds the frontier cache (least recently used rows are dropped).
    """

    def __init__(
        self,
        model: nn.Module,
        layer_name: str,
        graph: fx.Graph,
        cut: fx.Node,
        max_cache_bytes: int = 2 << 30,
    ) -> None:
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, param in model.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buffer in model.named_buffers(recurse=False):
            self.register_buffer(name, buffer)
        self.training = model.training
        self.layer_name = layer_name
        self.max_cache_bytes = int(max_cache_bytes)
        self._graph = graph
        self._cut = cut
        order = list(graph.nodes)
        index = order.index(cut)
        self._prefix_nodes = order[:index]
        prefix = set(self._prefix_nodes)
        self._frontier_nodes = [
            node
            for node in self._prefix_nodes
            if any(user not in prefix for user in node.users) and node.op != "output"
        ]
        names: list[str] = []
        for node in self._prefix_nodes:
            if node.op == "call_module":
                module = model.get_submodule(str(node.target))
                names += [f"{node.target}.{n}" for n, _ in module.named_parameters()]
                names += [f"{node.target}.{n}" for n, _ in module.named_buffers()]
            elif node.op == "get_attr":
                names.append(str(node.target))
        self._prefix_tensors = sorted(set(names))
        self._prefix_modules = sorted(
            {str(node.target) for node in self._prefix_nodes if node.op == "call_module"}
        )
        # (owner module, attribute, id and storage of the original tensor) for a fast check
        self._original: list[tuple[nn.Module, str, int, int]] = []
        for name in self._prefix_tensors:
            path, _, attr = name.rpartition(".")
            owner = self.get_submodule(path) if path else self
            tensor = getattr(owner, attr)
            if isinstance(tensor, Tensor):
                self._original.append((owner, attr, id(tensor), _storage_ptr(tensor)))
        self._prefix_module_objects = [self.get_submodule(n) for n in self._prefix_modules]
        self._cache: OrderedDict[Hashable, Frontier] = OrderedDict()
        self._cache_bytes = 0
        self.hits = 0
        self.misses = 0

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        model: nn.Module,
        layer_name: str,
        probe: Tensor | None = None,
        max_cache_bytes: int = 2 << 30,
        rtol: float = 1e-4,
    ) -> SplitModel | None:
        """Trace, cut and verify; ``None`` if the model cannot be split exactly at the layer.

        ``probe``: an input batch (default: two random 3x224x224 images) whose split output
        must match ``model(probe)`` to ``rtol`` relative to the outputs' scale.
        """
        try:
            graph = _LeafTracer().trace(model)
        except Exception:  # untraceable control flow: fall back to full forward passes
            return None
        cut = next(
            (n for n in graph.nodes if n.op == "call_module" and n.target == layer_name), None
        )
        if cut is None:
            return None
        try:
            split = cls(model, layer_name, graph, cut, max_cache_bytes)
        except (KeyError, TypeError):  # a child name collides with an attribute of the wrapper
            return None
        if not split._frontier_nodes:
            return None
        probe = torch.randn(2, 3, 224, 224) if probe is None else probe
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                device = next((p.device for p in model.parameters()), torch.device("cpu"))
                probe = probe.to(device)
                expected = model(probe)
                frontier = split._prefix_values(probe)
                if any(
                    not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != 2
                    for value in frontier
                ):
                    return None  # non-tensor or non-batched values cross the cut
                got = split.run_suffix(frontier)
            scale = float(expected.abs().max()) or 1.0
            if got.shape != expected.shape or float((got - expected).abs().max()) > rtol * scale:
                return None
        except Exception:
            return None
        finally:
            model.train(was_training)
        split.train(was_training)
        return split

    # -- the two halves ----------------------------------------------------------------------
    def _prefix_values(self, images: Tensor) -> Frontier:
        interpreter = _PrefixInterpreter(self, self._graph, self._cut)
        with contextlib.suppress(_Cut):
            interpreter.run(images)
        return tuple(interpreter.env[node] for node in self._frontier_nodes)

    def run_suffix(self, frontier: Frontier) -> Any:
        """The suffix: the network's output from frontier values (as from :meth:`run_prefix`)."""
        env: dict[fx.Node, Any] = dict.fromkeys(self._prefix_nodes)
        env.update(zip(self._frontier_nodes, frontier, strict=True))
        interpreter = fx.Interpreter(self, garbage_collect_values=True, graph=self._graph)
        interpreter.extra_traceback = False
        return interpreter.run(None, initial_env=env)

    # -- cache -------------------------------------------------------------------------------
    def _prefix_state(self) -> tuple[int, ...] | None:
        """Version counters of the tensors the prefix reads, or ``None`` if the cache must not
        be used: a tensor was replaced by one with other storage (``functional_call`` with new
        values), a replacement needs gradients, or a prefix module is in training mode."""
        if any(module.training for module in self._prefix_module_objects):
            return None
        grad = torch.is_grad_enabled()
        versions = []
        for owner, attr, original_id, original_ptr in self._original:
            tensor = getattr(owner, attr)
            if id(tensor) != original_id:
                if not isinstance(tensor, Tensor) or _storage_ptr(tensor) != original_ptr:
                    return None
                if grad and tensor.requires_grad:
                    return None
            versions.append(tensor._version)
        return tuple(versions)

    def row_digests(self, images: Tensor) -> list[str]:
        """Content digest of every row of ``images`` (dtype, shape and bytes)."""
        return [_row_digest(row) for row in images]

    def cache_keys(self, digests: Sequence[str]) -> list[Hashable] | None:
        """Cache keys (prefix state + digest); ``None`` when the cache cannot be used now
        (see :meth:`_prefix_state`)."""
        state = self._prefix_state()
        if state is None or self.max_cache_bytes <= 0:
            return None
        return [(state, digest) for digest in digests]

    def row_keys(self, images: Tensor) -> list[Hashable] | None:
        """Cache keys of the rows of ``images``, or ``None`` (no caching for them)."""
        if images.requires_grad:
            return None
        return self.cache_keys(self.row_digests(images))

    def cached_frontier(self, keys: Sequence[Hashable]) -> Frontier | None:
        """Frontier of previously seen rows, or ``None`` if any is not cached."""
        rows = []
        for key in keys:
            found = self._cache.get(key)
            if found is None:
                return None
            self._cache.move_to_end(key)
            rows.append(found)
        if not rows:
            return None
        return tuple(torch.stack([row[i] for row in rows]) for i in range(len(rows[0])))

    def _store(self, key: Hashable, row: Frontier) -> None:
        size = sum(t.numel() * t.element_size() for t in row)
        if size > self.max_cache_bytes:
            return
        if key in self._cache:
            return
        self._cache[key] = row
        self._cache_bytes += size
        while self._cache_bytes > self.max_cache_bytes and self._cache:
            _, dropped = self._cache.popitem(last=False)
            self._cache_bytes -= sum(t.numel() * t.element_size() for t in dropped)

    def clear_cache(self) -> None:
        self._cache.clear()
        self._cache_bytes = 0

    @property
    def cache_bytes(self) -> int:
        return self._cache_bytes

    def run_prefix(self, images: Tensor, keys: Sequence[Hashable] | None = None) -> Frontier:
        """Frontier values of a batch, from the cache where possible (rows computed once).

        ``keys`` (from :meth:`row_keys` on the same images) saves hashing them again.
        """
        keys = list(keys) if keys is not None else self.row_keys(images)
        if keys is None:
            return self._prefix_values(images)
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        computed: dict[int, Frontier] = {}
        if missing:
            self.misses += len(missing)
            with torch.no_grad():
                values = self._prefix_values(images[missing])
            for j, i in enumerate(missing):
                row = tuple(value[j].detach().clone() for value in values)
                computed[i] = row
                self._store(keys[i], row)
        self.hits += len(keys) - len(missing)
        rows = []
        for i, key in enumerate(keys):
            if i in computed:
                rows.append(computed[i])
            else:
                self._cache.move_to_end(key)
                rows.append(self._cache[key])
        return tuple(torch.stack([row[k] for row in rows]) for k in range(len(rows[0])))

    def prefix(self, images: Tensor) -> Frontier:
        """Frontier values of a batch, computed without the cache (for a set its caller keeps,
        such as a locality set that every candidate re-reads)."""
        with torch.no_grad():
            return tuple(value.detach() for value in self._prefix_values(images))

    def forward(self, images: Tensor) -> Any:
        return self.run_suffix(self.run_prefix(images))
