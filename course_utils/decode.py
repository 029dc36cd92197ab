"""One decoding step of a MiniGPT without its modules: the same model, the same arithmetic,
fewer operations.

A cached decoding step feeds one new token per row through the model. ``MiniGPT.forward`` is
written to teach, and to serve every case (training, padding, attention maps, head ablation,
any cache), so each step pays for checks, masks, position tensors, dropout modules, head
reshapes and some eighty module calls that one new token without padding does not need. In a
small model that overhead rivals the matrix products themselves: ``python -m course_utils bench
generation --floor`` prints where a step's time goes.

``decode_step`` runs the same step as ``model(token_ids, cache=cache)`` straight from the
model's weights, calling the same kernels on tensors of the same shapes, so its logits are equal
bit for bit (tested), and so are the tokens ``generate`` picks from them. What it leaves out:
- the token-id and length checks (``generate`` checked the prompt, picks every later token
  itself, and the cache refuses to overflow);
- the position and mask tensors (one new token attends to every cached one: no mask);
- dropout (a no-op in eval mode) and the module calls around each function;
- the head split and merge (one position's heads are already laid out head by head).

``generate`` and speculative decoding take this path by themselves (``adapters``) whenever it
gives the same result: a ``MiniGPT`` built of its own modules only (not, say, with LoRA layers), in
eval mode, with no head mask and no hooks, one new token
per row, no padding, and a ``PreallocatedKVCache`` that already holds the prompt. Anything else
goes through ``model(...)``.

Taught in: lesson 04 (where a decoding step's time goes).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .kv_cache import PreallocatedKVCache
from .model import MLP, Block, CausalSelfAttention, MiniGPT

# The modules of a MiniGPT as the course builds it: a model holding anything else (lesson 09's
# LoRALinear, a lesson's own replacement) goes through its modules, which know what they hold.
_PLAIN_MODULES = (MiniGPT, Block, CausalSelfAttention, MLP, nn.ModuleList, nn.Embedding, nn.Dropout, nn.LayerNorm,
                  nn.Linear, nn.GELU)


def _only_plain_modules_without_hooks(model: torch.nn.Module) -> bool:
    return all(type(module) in _PLAIN_MODULES and not (module._forward_hooks or module._forward_pre_hooks)
               for module in model.modules())


def takes_fast_step(model: torch.nn.Module, new_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                    cache: object) -> bool:
    """Whether ``decode_step`` gives what ``model(new_ids, attention_mask=attention_mask,
    cache=cache)`` would: see the module's docstring for the conditions."""
    return (type(model) is MiniGPT and not model.training and new_ids.shape[1] == 1 and attention_mask is None
            and isinstance(cache, PreallocatedKVCache) and len(cache) > 0
            and all(block.attn.head_mask is None for block in cast(list[Block], model.h))
            and _only_plain_modules_without_hooks(model))


def decode_step(model: MiniGPT, token_ids: torch.Tensor, cache: PreallocatedKVCache) -> torch.Tensor:
    """Logits (B, 1, V) of ``model`` for ``token_ids`` (B, 1), the token after the ``len(cache)``
    positions ``cache`` holds, which it then holds too; equal to ``model(token_ids, cache=cache)``
    for a model and cache that ``takes_fast_step`` accepts."""
    config = model.config
    B, C, H = token_ids.shape[0], config.n_embd, config.n_head
    position = len(cache)
    x = F.embedding(token_ids, model.wte.weight) + model.wpe.weight[position : position + 1]  # (B, 1, C)
    for layer, block in enumerate(cast(list[Block], model.h)):
        h = F.layer_norm(x, (C,), block.ln_1.weight, block.ln_1.bias, config.layer_norm_epsilon)
        # (B, 1, 3C) viewed as (B, 3, H, 1, D): one position's queries, keys and values, head by head
        q, k, v = F.linear(h, block.attn.c_attn.weight, block.attn.c_attn.bias).view(B, 3, H, 1, C // H).unbind(1)
        k, v = cache.extend(layer, k, v)  # (B, H, T_past + 1, D)
        y = F.scaled_dot_product_attention(q, k, v)  # one query: every cached key is in its past
        x = x + F.linear(y.reshape(B, 1, C), block.attn.c_proj.weight, block.attn.c_proj.bias)
        h = F.layer_norm(x, (C,), block.ln_2.weight, block.ln_2.bias, config.layer_norm_epsilon)
        h = F.gelu(F.linear(h, block.mlp.c_fc.weight, block.mlp.c_fc.bias), approximate="tanh")
        x = x + F.linear(h, block.mlp.c_proj.weight, block.mlp.c_proj.bias)
    x = F.layer_norm(x, (C,), model.ln_f.weight, model.ln_f.bias, config.layer_norm_epsilon)
    return F.linear(x, model.lm_head.weight)
