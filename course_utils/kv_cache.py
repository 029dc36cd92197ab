"""The KV cache: keep every layer's keys and values so that each new token's forward pass
needs only that token (lesson 04; the sliding-window cache is lesson 08's).

Four forms of one interface (``model.KVCache``: ``len()``, ``extend``, ``reorder``, plus ``crop``
where rollback is possible and ``nbytes`` to measure them): growing, preallocated, int8 and
sliding-window. Also the cost model lesson 04 reasons with (multiply-adds per token, cache
bytes) and weight-only int8 quantisation. Shapes: B = batch, H = heads, T = positions, D = head
size.

Taught in: lesson 04 (KV cache), lesson 08 (sliding windows, grouped-query caches).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .llama import LlamaConfig
from .model import GPTConfig

CACHE_IMPLEMENTATIONS = ("preallocated", "growing", "int8")


def _check_crop(length: int, cached: int) -> None:
    if not isinstance(length, int) or not 0 <= length <= cached:
        raise ValueError(f"length must be an integer in [0, {cached}] (the cached positions), got {length!r}")


class GrowingKVCache:
    """The keys and values every layer has computed so far, so that a new token's forward pass
    needs only that token: per layer, keys and values of shape (B, H, T_past, D).

    The growing form: each step concatenates the new keys and values onto the old ones, so every
    step allocates and copies the whole cache again, and memory is only what is used.
    """

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def __len__(self) -> int:
        """How many positions are cached."""
        return self.keys[0].shape[2] if self.keys else 0

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's k, v (B, H, T_new, D) for ``layer``; return all of them so far."""
        if layer == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=2)
        return self.keys[layer], self.values[layer]

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep batch rows ``rows`` (in that order), as beam search does when beams swap."""
        self.keys = [k[rows] for k in self.keys]
        self.values = [v[rows] for v in self.values]

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (speculative decoding's rollback)."""
        _check_crop(length, len(self))
        self.keys = [k[:, :, :length] for k in self.keys]
        self.values = [v[:, :, :length] for v in self.values]

    def nbytes(self) -> int:
        """Bytes held by the cached tensors."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


class PreallocatedKVCache:
    """The same cache in buffers of ``max_length`` positions, allocated at the first call and
    written in place: per layer, keys and values of shape (B, H, max_length, D), of which the first
    ``len(cache)`` positions are filled. Each step writes only the new positions and hands
    attention a view of the filled part; no step allocates or copies the past.
    (``transformers`` calls this a static cache, and the growing one dynamic.)
    """

    def __init__(self, max_length: int) -> None:
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int (positions to hold), got {max_length!r}")
        self.max_length = max_length
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.lengths: list[int] = []  # filled positions, per layer

    def __len__(self) -> int:
        """How many positions are cached."""
        return self.lengths[0] if self.lengths else 0

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's k, v (B, H, T_new, D) for ``layer``; return views of all filled positions."""
        if layer == len(self.keys):
            B, H, _, D = k.shape
            self.keys.append(k.new_empty(B, H, self.max_length, D))
            self.values.append(v.new_empty(B, H, self.max_length, D))
            self.lengths.append(0)
        start, end = self.lengths[layer], self.lengths[layer] + k.shape[2]
        if end > self.max_length:
            raise ValueError(f"the cache holds at most max_length={self.max_length} positions; {end} were asked for")
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        self.lengths[layer] = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep batch rows ``rows`` (in that order), as beam search does when beams swap."""
        for buffers in (self.keys, self.values):
            for layer, old in enumerate(buffers):
                new = old.new_empty(len(rows), *old.shape[1:])
                new[:, :, : self.lengths[layer]] = old[rows, :, : self.lengths[layer]]
                buffers[layer] = new

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (speculative decoding's rollback): only the
        filled length changes; nothing is copied, and the next write overwrites the rest."""
        _check_crop(length, len(self))
        self.lengths = [length] * len(self.lengths)

    def nbytes(self) -> int:
        """Bytes held by the buffers: all ``max_length`` positions, however many are filled."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantisation of each vector along the last dimension: x (..., D) ->
    (int8 values (..., D), float32 scales (..., 1)) with x ~ values * scale, where
    scale = max|x| / 127, so the rounding error is at most scale / 2 per element."""
    scale = x.float().abs().amax(dim=-1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny) / 127
    return (x.float() / scale).round().clamp(-127, 127).to(torch.int8), scale


def int8_weights(model: nn.Module) -> tuple[nn.Module, int]:
    """Weight-only int8 quantisation, simulated: a copy of ``model`` in which every 2-D weight
    (the linear layers and the embeddings; a tied matrix once) is rounded to int8 with one float32
    scale per row (``quantize_int8``) and read back in its dtype, and the bytes its parameters
    would take stored that way: one byte per such weight plus 4 per row, the rest (biases, norms)
    as they are. Activations and arithmetic are unchanged, so the copy's outputs show the error
    the rounding alone causes; a real int8 kernel would also compute in lower precision."""
    quantized = copy.deepcopy(model)
    stored = 0
    with torch.no_grad():
        for parameter in quantized.parameters():  # each shared (tied) parameter once
            if parameter.dim() == 2:
                values, scales = quantize_int8(parameter)
                parameter.copy_((values.float() * scales).to(parameter.dtype))
                stored += values.numel() + scales.numel() * 4
            else:
                stored += parameter.numel() * parameter.element_size()
    return quantized, stored


class Int8KVCache:
    """The growing cache, stored in int8: per layer, keys and values as int8 (B, H, T, D) with
    one float32 scale per head and position (B, H, T, 1), from ``quantize_int8``. That is D + 4
    bytes per head and position instead of 4 D in float32 (2 D in float16).

    Each step quantises the new keys and values, appends them, and hands attention all of them
    read back in the model's dtype, so attention itself runs as before on slightly rounded
    inputs; only storage shrinks.
    """

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []  # int8 (B, H, T, D) per layer
        self.values: list[torch.Tensor] = []
        self.key_scales: list[torch.Tensor] = []  # float32 (B, H, T, 1) per layer
        self.value_scales: list[torch.Tensor] = []

    def __len__(self) -> int:
        """How many positions are cached."""
        return self.keys[0].shape[2] if self.keys else 0

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise and append this step's k, v (B, H, T_new, D) for ``layer``; return all keys and
        values so far, read back in k's dtype."""
        stores = (self.keys, self.key_scales, self.values, self.value_scales)
        new = (*quantize_int8(k), *quantize_int8(v))
        for store, tensor in zip(stores, new):
            if layer == len(store):
                store.append(tensor)
            else:
                store[layer] = torch.cat([store[layer], tensor], dim=2)
        keys = (self.keys[layer] * self.key_scales[layer]).to(k.dtype)
        values = (self.values[layer] * self.value_scales[layer]).to(v.dtype)
        return keys, values

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep batch rows ``rows`` (in that order), as beam search does when beams swap."""
        for store in (self.keys, self.key_scales, self.values, self.value_scales):
            store[:] = [t[rows] for t in store]

    def nbytes(self) -> int:
        """Bytes held by the int8 tensors and their scales."""
        stores = self.keys + self.key_scales + self.values + self.value_scales
        return sum(t.numel() * t.element_size() for t in stores)


class SlidingWindowKVCache:
    """For a model with a sliding window of W tokens: keeps only the keys and values of the last
    W - 1 positions, all a new token can still attend to, per layer (B, H, W - 1, D) at most.
    Memory stops growing with the length; ``len()`` still counts every position seen, because
    positions (RoPE) keep counting. Each ``extend`` returns the kept past plus the new tokens,
    which ``attend`` masks with the window."""

    def __init__(self, window: int) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self.window = window
        self.seen = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def __len__(self) -> int:
        """How many positions have passed through the cache (not how many it holds)."""
        return self.seen

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept keys and values of ``layer`` followed by this step's k, v (B, H, T_new, D);
        then keep only the last W - 1 of them."""
        if layer == len(self.keys):
            keys, values = k, v
            self.keys.append(k)
            self.values.append(v)
        else:
            keys = torch.cat([self.keys[layer], k], dim=2)
            values = torch.cat([self.values[layer], v], dim=2)
        start = max(0, keys.shape[2] - (self.window - 1))
        self.keys[layer], self.values[layer] = keys[:, :, start:], values[:, :, start:]
        if layer == 0:  # as the other caches, whose length is that of layer 0's keys
            self.seen += k.shape[2]
        return keys, values

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep batch rows ``rows`` (in that order), as beam search does when beams swap."""
        self.keys = [k[rows] for k in self.keys]
        self.values = [v[rows] for v in self.values]

    def nbytes(self) -> int:
        """Bytes held by the kept key and value tensors."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


# Any form: each has len(), extend, reorder and nbytes.
KVCache = GrowingKVCache | PreallocatedKVCache | Int8KVCache | SlidingWindowKVCache


def make_cache(implementation: str, max_length: int) -> KVCache:
    """A new, empty cache of the form ``generate``'s ``cache_implementation`` names:
    "preallocated" (buffers for ``max_length`` positions), "growing" or "int8"."""
    if implementation not in CACHE_IMPLEMENTATIONS:
        raise ValueError(f"cache_implementation must be one of {CACHE_IMPLEMENTATIONS}, got {implementation!r}")
    if implementation == "preallocated":
        return PreallocatedKVCache(max_length)
    return GrowingKVCache() if implementation == "growing" else Int8KVCache()


def multiply_adds_per_token(config: GPTConfig, n_past: int = 0) -> int:
    """Matrix multiply-adds to process one token that attends to ``n_past`` earlier tokens.

    Per layer: q, k, v and output projections 4C^2, the MLP 8C^2, and attention itself
    2 (n_past + 1) C (scores and weighted sum); then the LM head C V. LayerNorms, GELU, softmax
    and embedding look-ups are elementwise and left out.
    """
    C = config.n_embd
    per_layer = 12 * C * C + 2 * (n_past + 1) * C
    return config.n_layer * per_layer + C * config.vocab_size


def kv_cache_bytes(config: GPTConfig | LlamaConfig, seq_len: int, batch: int = 1, bytes_per_value: int = 4) -> int:
    """Bytes of keys and values for ``seq_len`` positions of ``batch`` sequences:
    2 (keys and values) x layers x batch x positions kept x key/value heads x head size x bytes
    per value. ``config``: a GPTConfig or a LlamaConfig, whose ``n_kv_heads`` (grouped-query
    attention) may be fewer than its heads; with a ``sliding_window`` of W, only the last W - 1
    positions are kept between steps (``SlidingWindowKVCache``)."""
    window = config.sliding_window
    kept = seq_len if window is None else min(seq_len, window - 1)
    return 2 * config.n_layer * batch * kept * config.n_kv_heads * config.head_size * bytes_per_value
