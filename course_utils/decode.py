"""One decoding step of a MiniGPT without its modules: the same model, the same arithmetic,
fewer operations.

A cached decoding step feeds one new token per row through the model (speculative decoding's
verification: a few). ``MiniGPT.forward`` is
written to teach, and to serve every case (training, padding, attention maps, head ablation,
any cache), so each step pays for checks, masks, position tensors, dropout modules, head
reshapes and some eighty module calls that one new token without padding does not need. In a
small model that overhead rivals the matrix products themselves: ``python -m course_utils bench
generation --floor`` prints where a step's time goes.

``decode_step`` runs the same step as ``model(token_ids, cache=cache)`` straight from the
model's weights, calling the same kernels on tensors of the same shapes, so its logits are equal
bit for bit (tested), and so are the tokens ``generate`` picks from them. What it leaves out:
- the token-id checks (``generate`` checked the prompt and picks every later token itself; the
  context length is still checked, and the cache refuses to overflow);
- the position tensors, and for one new token the mask (it attends to every cached one);
- dropout (a no-op in eval mode), the module calls around each function, and the Python
  wrappers of ``F.embedding`` and ``F.layer_norm`` (their ops are called directly);
- for one new token, the head split and merge (one position's heads are already laid out head by
  head).

``generate`` and speculative decoding take this path by themselves (``adapters``) whenever it
gives the same result: a ``MiniGPT`` built of its own modules only (not, say, with LoRA layers), in
eval mode, with no head mask and no hooks, no padding, and a ``PreallocatedKVCache`` that
already holds the prompt (so the prompt itself, the prefill, goes through the modules). Anything
else goes through ``model(...)``.

Taught in: lesson 04 (where a decoding step's time goes).
"""

from __future__ import annotations

import weakref
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .kv_cache import PreallocatedKVCache
from .model import MLP, Block, CausalSelfAttention, KVCache, MiniGPT, causal_mask, merge_heads, split_heads

# The modules of a MiniGPT as the course builds it: a model holding anything else (lesson 09's
# LoRALinear, a lesson's own replacement) goes through its modules, which know what they hold.
_PLAIN_MODULES = (MiniGPT, Block, CausalSelfAttention, MLP, nn.ModuleList, nn.Embedding, nn.Dropout, nn.LayerNorm,
                  nn.Linear, nn.GELU)


def _only_plain_modules_without_hooks(model: torch.nn.Module) -> bool:
    return all(type(module) in _PLAIN_MODULES and not (module._forward_hooks or module._forward_pre_hooks)
               for module in model.modules())


def _tokens_after_a_filled_cache(model: torch.nn.Module, attention_mask: torch.Tensor | None, cache: object) -> bool:
    """The conditions of ``takes_fast_step`` that can change from one step to the next."""
    return (not model.training and attention_mask is None and isinstance(cache, PreallocatedKVCache)
            and len(cache) > 0)


def takes_fast_step(model: torch.nn.Module, new_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                    cache: object) -> bool:
    """Whether ``decode_step`` gives what ``model(new_ids, attention_mask=attention_mask,
    cache=cache)`` would: see the module's docstring for the conditions."""
    return (type(model) is MiniGPT and new_ids.shape[1] >= 1
            and _tokens_after_a_filled_cache(model, attention_mask, cache)
            and all(block.attn.head_mask is None for block in cast(list[Block], model.h))
            and _only_plain_modules_without_hooks(model))


class DecodeStep:
    """``decode_step`` for one model with its weights gathered once, for the many steps of one
    ``generate`` call: looking up some forty module attributes a step costs as much in a small
    model as its layer norms (``bench generation --floor``). It holds the model's tensors, not
    copies, so it sees a change of their values but not a module replaced after it was made."""

    def __init__(self, model: MiniGPT) -> None:
        config = model.config
        self.n_embd, self.n_head, self.epsilon = config.n_embd, config.n_head, config.layer_norm_epsilon
        self.context_length = config.context_length
        self.wte, self.wpe = model.wte.weight, model.wpe.weight
        # each weight matrix held transposed (a view, not a copy): F.linear(h, w, b) is
        # torch.addmm(b, h, w.t()), and calling addmm on the view saves a dispatched t() per product
        self.layers = [(block.ln_1.weight, block.ln_1.bias, block.attn.c_attn.weight.t(), block.attn.c_attn.bias,
                        block.attn.c_proj.weight.t(), block.attn.c_proj.bias, block.ln_2.weight, block.ln_2.bias,
                        block.mlp.c_fc.weight.t(), block.mlp.c_fc.bias, block.mlp.c_proj.weight.t(),
                        block.mlp.c_proj.bias)
                       for block in cast(list[Block], model.h)]
        self.ln_f, self.lm_head_t = (model.ln_f.weight, model.ln_f.bias), model.lm_head.weight.t()

    def __call__(self, token_ids: torch.Tensor, cache: PreallocatedKVCache) -> torch.Tensor:
        """Logits (B, T, V) for ``token_ids`` (B, T); see ``decode_step``."""
        if len(cache) + token_ids.shape[1] > self.context_length:  # the model's own check, kept
            raise ValueError(f"input_ids has {len(cache) + token_ids.shape[1]} tokens (cached ones included) but the "
                             f"model's context_length is {self.context_length}; pass at most {self.context_length} "
                             f"tokens")
        return self._one_token(token_ids, cache) if token_ids.shape[1] == 1 else self._chunk(token_ids, cache)

    def _one_token(self, token_ids: torch.Tensor, cache: PreallocatedKVCache) -> torch.Tensor:
        """Logits (B, 1, V) for ``token_ids`` (B, 1): the step of plain decoding and of drafting."""
        B, C, H, epsilon = token_ids.shape[0], self.n_embd, self.n_head, self.epsilon
        position, shape = len(cache), (C,)
        # one position per row, so activations stay (B, C): addmm is then the same matrix product
        # the modules' F.linear reaches after flattening (B, 1, C), without the reshapes around it.
        # F.embedding and F.layer_norm are Python wrappers: their ops are called directly
        # (index_select, torch.layer_norm), the same kernels without a microsecond of Python each.
        # x is a fresh tensor, so the residual sums below can add into it in place (the same arithmetic)
        x = self.wte.index_select(0, token_ids.view(B)).add_(self.wpe[position])  # (B, C)
        for layer, (ln_1_w, ln_1_b, attn_w_t, attn_b, proj_w_t, proj_b, ln_2_w, ln_2_b, fc_w_t, fc_b, fc_proj_w_t,
                    fc_proj_b) in enumerate(self.layers):
            h = torch.layer_norm(x, shape, ln_1_w, ln_1_b, epsilon)
            # (B, 3C) viewed as (B, 3, H, 1, D): one position's queries, keys and values, head by head
            q, k, v = torch.addmm(attn_b, h, attn_w_t).view(B, 3, H, 1, C // H).unbind(1)
            k, v = cache.extend(layer, k, v)  # (B, H, T_past + 1, D)
            y = F.scaled_dot_product_attention(q, k, v)  # one query: every cached key is in its past
            x += torch.addmm(proj_b, y.reshape(B, C), proj_w_t)
            h = torch.layer_norm(x, shape, ln_2_w, ln_2_b, epsilon)
            x += torch.addmm(fc_proj_b, F.gelu(torch.addmm(fc_b, h, fc_w_t), approximate="tanh"), fc_proj_w_t)
        x = torch.layer_norm(x, shape, *self.ln_f, epsilon)
        return torch.mm(x, self.lm_head_t).view(B, 1, -1)

    def _chunk(self, token_ids: torch.Tensor, cache: PreallocatedKVCache) -> torch.Tensor:
        """Logits (B, T, V) for ``token_ids`` (B, T), T > 1: the chunk speculative decoding verifies.
        The operations of ``model(...)`` on the same shapes, in the same order: each product on the
        activations flattened to (B * T, C), as F.linear does with a contiguous (B, T, C) input, and
        the heads split and merged as ``split_heads`` and ``merge_heads`` do."""
        B, T = token_ids.shape
        C, H, epsilon = self.n_embd, self.n_head, self.epsilon
        position, shape = len(cache), (C,)
        x = self.wte.index_select(0, token_ids.view(B * T)).view(B, T, C) + self.wpe[position:position + T]
        mask = causal_mask(T, x.device, position)  # (T, T_past + T): each new query, its past and itself
        for layer, (ln_1_w, ln_1_b, attn_w_t, attn_b, proj_w_t, proj_b, ln_2_w, ln_2_b, fc_w_t, fc_b, fc_proj_w_t,
                    fc_proj_b) in enumerate(self.layers):
            h = torch.layer_norm(x, shape, ln_1_w, ln_1_b, epsilon)
            qkv = torch.addmm(attn_b, h.view(B * T, C), attn_w_t).view(B, T, 3 * C)
            q, k, v = (split_heads(t, H) for t in qkv.split(C, dim=2))  # each (B, H, T, D)
            k, v = cache.extend(layer, k, v)  # (B, H, T_past + T, D)
            y = merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))  # (B, T, C)
            x = x + torch.addmm(proj_b, y.view(B * T, C), proj_w_t).view(B, T, C)
            h = torch.layer_norm(x, shape, ln_2_w, ln_2_b, epsilon).view(B * T, C)
            x = x + torch.addmm(fc_proj_b, F.gelu(torch.addmm(fc_b, h, fc_w_t), approximate="tanh"),
                                fc_proj_w_t).view(B, T, C)
        x = torch.layer_norm(x, shape, *self.ln_f, epsilon)
        return torch.mm(x.view(B * T, C), self.lm_head_t).view(B, T, -1)


def decode_step(model: MiniGPT, token_ids: torch.Tensor, cache: PreallocatedKVCache) -> torch.Tensor:
    """Logits (B, T, V) of ``model`` for ``token_ids`` (B, T), the tokens after the ``len(cache)``
    positions ``cache`` holds, which it then holds too; equal to ``model(token_ids, cache=cache)``
    for a model and cache that ``takes_fast_step`` accepts."""
    return DecodeStep(model)(token_ids, cache)


# The step each cache's decoding takes, decided at its first cached step (the model checked and its
# weights gathered once per generate call, not once per token) and forgotten with the cache.
_STEPS: weakref.WeakKeyDictionary[PreallocatedKVCache, tuple[weakref.ref[torch.nn.Module], DecodeStep | None]] = (
    weakref.WeakKeyDictionary())


def cached_forward(model: torch.nn.Module, new_ids: torch.Tensor, cache: KVCache | None,
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """A course model's logits (B, T_new, V) for ``new_ids`` (B, T_new) after the positions
    ``cache`` holds: ``decode_step`` where it gives the same logits (``takes_fast_step``), else
    ``model(...)``. Whether the model qualifies (its modules, hooks and head masks) is checked at
    the first step into a filled cache, and the answer kept for that cache: a hook or module
    added halfway through one ``generate`` call is seen from the next call on."""
    if _tokens_after_a_filled_cache(model, attention_mask, cache):
        filled = cast(PreallocatedKVCache, cache)
        model_ref, step = _STEPS.get(filled, (None, None))
        if model_ref is None or model_ref() is not model:
            step = DecodeStep(cast(MiniGPT, model)) if takes_fast_step(model, new_ids, attention_mask, filled) else None
            _STEPS[filled] = (weakref.ref(model), step)
        if step is not None:
            return step(new_ids, filled)
    return model(new_ids, attention_mask=attention_mask, cache=cache)
