"""MiniLlama: the Llama architecture in one readable file, beside MiniGPT.

What changes from GPT-2 (Touvron et al. 2023, "LLaMA"; Jiang et al. 2023, "Mistral 7B"):

- RMSNorm instead of LayerNorm: no mean subtracted, no bias (Zhang and Sennrich 2019).
- Rotary position embeddings (RoPE, Su et al. 2021) on queries and keys instead of learned
  absolute positions; ALiBi (Press et al. 2022), a per-head linear penalty on distance, as an
  option (``position="alibi"``).
- A SwiGLU feed-forward network, down(silu(gate(x)) * up(x)) (Shazeer 2020).
- Grouped-query attention (Ainslie et al. 2023): ``n_kv_heads`` key/value heads shared by groups
  of ``n_head`` query heads; 1 is multi-query attention (Shazeer 2019).
- An optional sliding window (Mistral): each token sees only the last ``sliding_window`` tokens.
- No biases anywhere, and an untied LM head.

Attention itself, the KV caches, ``generate`` and the ``Trainer`` are MiniGPT's: one
implementation of each. Names follow transformers' ``LlamaForCausalLM`` (``embed_tokens``,
``layers``, ``self_attn.q_proj``...), so checkpoints map tensor by tensor. Shapes: B batch,
T sequence length, C = ``n_embd``, H = ``n_head``, K = ``n_kv_heads``, D = C / H, V vocabulary.

Taught in: lesson 08.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .model import CourseModel, GPTConfig, KVCache, attend, merge_heads, positions_and_key_mask, split_heads

POSITIONS = ("rope", "alibi")


def swiglu_hidden_size(n_embd: int, multiple_of: int = 32) -> int:
    """The SwiGLU width with the parameters of a 4C GELU MLP: three matrices of C x F instead of
    two of C x 4C, so F = 2/3 x 4C, rounded up to a multiple of ``multiple_of`` (Llama's rule)."""
    hidden = int(2 * 4 * n_embd / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


@dataclass
class LlamaConfig:
    """Hyper-parameters of a Llama-style model."""

    vocab_size: int = 4096
    context_length: int = 256  # the largest T, max_position_embeddings in transformers
    n_layer: int = 6
    n_head: int = 8
    n_kv_heads: int = None  # type: ignore[assignment]  # None: n_head (plain multi-head attention)
    n_embd: int = 256
    intermediate_size: int = None  # type: ignore[assignment]  # None: swiglu_hidden_size(n_embd)
    position: str = "rope"  # or "alibi"
    rope_theta: float = 10000.0
    sliding_window: int | None = None
    rms_norm_eps: float = 1e-6
    dropout: float = 0.0  # on the residual branches, as MiniGPT
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_head
        if self.intermediate_size is None:
            self.intermediate_size = swiglu_hidden_size(self.n_embd)
        self._check_sizes()
        self._check_positions()
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def _check_sizes(self) -> None:
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "n_kv_heads", "n_embd",
                     "intermediate_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.n_kv_heads:
            raise ValueError(f"n_head ({self.n_head}) must be divisible by n_kv_heads ({self.n_kv_heads})")

    def _check_positions(self) -> None:
        if self.position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {self.position!r}")
        if self.position == "rope" and self.head_size % 2:
            raise ValueError(f"RoPE rotates pairs of dimensions: the head size must be even, got {self.head_size}")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"sliding_window must be a positive integer or None, got {self.sliding_window}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def description(self) -> str:
        """How a model card names the architecture."""
        return (f"Llama-style (RMSNorm, {'RoPE' if self.position == 'rope' else 'ALiBi'}, SwiGLU of width "
                f"{self.intermediate_size}, {self.n_kv_heads} key/value heads, no biases)")

    def parameter_count(self) -> int:
        """Parameters of a MiniLlama with this configuration, by formula (no model built):
        V C (twice if the head is untied) + L (C H D + 2 C K D + H D C + 3 C F + 2 C) + C:
        queries, keys and values of K heads, output, the three SwiGLU matrices, two RMSNorms; no
        positions, no biases."""
        C, L, V = self.n_embd, self.n_layer, self.vocab_size
        D, H, K, F = self.head_size, self.n_head, self.n_kv_heads, self.intermediate_size
        embeddings = V * C * (1 if self.tie_word_embeddings else 2)
        return embeddings + L * (2 * C * H * D + 2 * C * K * D + 3 * C * F + 2 * C) + C

    def build(self) -> MiniLlama:
        """A freshly initialised MiniLlama of this configuration."""
        return MiniLlama(self)


CONFIGS = (GPTConfig, LlamaConfig)  # every configuration a course model is built from


def config_from_dict(values: dict) -> GPTConfig | LlamaConfig:
    """The configuration that ``values`` (a configuration's ``asdict``, or some of its fields)
    describe: the first of ``CONFIGS`` whose fields include every key, so that a dict of only the
    fields both share is a ``GPTConfig``. A ``ValueError`` names the keys when none does."""
    for config in CONFIGS:
        if set(values) <= {field.name for field in fields(config)}:
            return config(**values)
    raise ValueError(f"no model configuration has all of the fields {sorted(values)}")


def parameter_count(config: GPTConfig | LlamaConfig) -> int:
    """Parameters of a MiniGPT or MiniLlama with this configuration, by formula (no model built),
    so that it also gives the size of published models from their configurations: each
    configuration's ``parameter_count()``, whose docstring gives its formula."""
    return config.parameter_count()


def equal_parameter_llama(gpt: GPTConfig, **changes) -> LlamaConfig:
    """The Llama-style counterpart of a GPT-2 configuration with (nearly) the same number of
    parameters: same vocabulary, context, layers, heads and width, a tied head as GPT-2's, and
    the SwiGLU width F chosen to make up for the parameters Llama drops (positions, biases, half
    of each norm). ``changes`` (for example ``n_kv_heads``) apply before F is chosen; the counts
    then differ by less than one unit of F, 3 C L parameters."""
    shared = dict(vocab_size=gpt.vocab_size, context_length=gpt.context_length, n_layer=gpt.n_layer,
                  n_head=gpt.n_head, n_embd=gpt.n_embd, dropout=gpt.dropout, tie_word_embeddings=True)
    per_unit = 3 * gpt.n_embd * gpt.n_layer  # one more unit of F: a column of gate, up and down
    without_mlp = parameter_count(LlamaConfig(**{**shared, **changes, "intermediate_size": 1})) - per_unit
    width = round((parameter_count(gpt) - without_mlp) / per_unit)
    if width < 1:
        raise ValueError(f"no SwiGLU width gives a Llama-style model as small as {gpt}")
    return LlamaConfig(**{**shared, **changes, "intermediate_size": width})


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, over the last dimension, computed in float32."""

    def __init__(self, size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


def rope_cos_sin(positions: torch.Tensor, head_size: int, theta: float = 10000.0,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (B, T, D) of the rotation angles: position m turns dimension pair i by
    m x theta^(-2i/D). Pairs are (i, i + D/2), the "rotate half" layout of Llama checkpoints."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, dtype=torch.float32, device=positions.device) / head_size)
    angles = positions[..., None].float() * inv_freq  # (B, T, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (B, T, D): pair i uses angle i twice
    return angles.cos().to(dtype), angles.sin().to(dtype)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, K, T, D) -> (B, K * n_rep, T, D): each key/value head n_rep times, its repeats side by
    side, so that query head h reads key/value head h // n_rep (grouped-query attention)."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate every pair (x_i, x_{i+D/2}) of x (B, H, T, D) by its angle: cos, sin (B, T, D)."""
    first, second = x.chunk(2, dim=-1)
    rotated_half = torch.cat([-second, first], dim=-1)
    return x * cos[:, None] + rotated_half * sin[:, None]


def alibi_slopes(n_head: int) -> torch.Tensor:
    """ALiBi's head slopes (H,): the geometric sequence 2^(-8/H), 2^(-16/H), ..., 2^(-8) when H is
    a power of two; otherwise those of the next lower power of two, then every other slope of
    twice that many (Press et al. 2022, as in their code)."""
    def powers_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_head).is_integer():
        return torch.tensor(powers_of_two(n_head))
    lower = 2 ** math.floor(math.log2(n_head))
    return torch.tensor(powers_of_two(lower) + powers_of_two(2 * lower)[0::2][: n_head - lower])


def alibi_bias(slopes: torch.Tensor, T: int, T_all: int) -> torch.Tensor:
    """(H, T, T_all) scores penalty -slope_h x (distance from query to key), for the newest T
    queries over the newest T_all keys; future keys get a positive value the mask removes."""
    queries = torch.arange(T_all - T, T_all, device=slopes.device)
    keys = torch.arange(T_all, device=slopes.device)
    distance = (queries[:, None] - keys[None, :]).float()  # (T, T_all)
    return -slopes[:, None, None] * distance


class LlamaAttention(nn.Module):
    """Causal self-attention with RoPE or ALiBi, grouped key/value heads and no biases."""

    slopes: torch.Tensor  # (H,) ALiBi's head slopes: a buffer, registered with position="alibi" only

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        D = config.head_size
        self.q_proj = nn.Linear(config.n_embd, config.n_head * D, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_kv_heads * D, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_kv_heads * D, bias=False)
        self.o_proj = nn.Linear(config.n_head * D, config.n_embd, bias=False)
        self.resid_dropout = nn.Dropout(config.dropout)
        if config.position == "alibi":
            self.register_buffer("slopes", alibi_slopes(config.n_head), persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        key_mask: torch.Tensor | None = None,
        return_attention: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, C); rope: cos and sin (B, T, D) of the new positions (None with ALiBi).
        Returns the output (B, T, C) and, when asked, the weights (B, H, T, T_all)."""
        c = self.config
        B, T, _ = x.shape
        q = split_heads(self.q_proj(x), c.n_head)  # (B, H, T, D)
        k = split_heads(self.k_proj(x), c.n_kv_heads)  # (B, K, T, D)
        v = split_heads(self.v_proj(x), c.n_kv_heads)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)  # keys are cached already rotated
        if cache is not None:
            k, v = cache.extend(layer, k, v)  # the cache holds K heads, not H: GQA's saving
        groups = c.n_head // c.n_kv_heads  # each key/value head serves `groups` query heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)
        bias = alibi_bias(self.slopes, T, k.shape[2]).to(q.dtype) if c.position == "alibi" else None
        y, weights = attend(q, k, v, key_mask, return_attention, c.sliding_window, bias)
        return self.resid_dropout(self.o_proj(merge_heads(y))), weights


class SwiGLU(nn.Module):
    """The gated feed-forward network: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class LlamaBlock(nn.Module):
    """A pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)), with RMSNorm."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, rope, key_mask=None, return_attention=False, cache=None, layer=0):
        attended, weights = self.self_attn(self.input_layernorm(x), rope, key_mask, return_attention, cache, layer)
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x)), weights


class MiniLlama(CourseModel):
    """A Llama-style language model: ``MiniLlama(config)(input_ids)`` gives logits (B, T, V)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(LlamaBlock(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        for name, param in self.named_parameters():  # as MiniGPT: scale the residual projections
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _run(self, input_ids, attention_mask, return_attention, cache=None):
        """Final hidden states (B, T, C) and, when asked, each layer's attention (B, H, T, T_all)."""
        n_past = len(cache) if cache is not None else 0
        self._check_input_ids(input_ids, n_past)
        positions, key_mask = positions_and_key_mask(input_ids, attention_mask, n_past)
        x = self.drop(self.embed_tokens(input_ids))
        rope = None
        if self.config.position == "rope":
            rope = rope_cos_sin(positions, self.config.head_size, self.config.rope_theta, x.dtype)
        attentions = []
        for layer, block in enumerate(self.layers):
            x, weights = block(x, rope, key_mask, return_attention, cache, layer)
            if weights is not None:
                attentions.append(weights)
        return self.norm(x), attentions

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """As ``MiniGPT.forward``: logits (B, T, V), or the mean cross-entropy against ``targets``,
        with ``attention_mask`` and ``cache`` as there. RoPE takes positions from the attention
        mask, as GPT-2's learned positions do; ALiBi needs none: only distances between tokens
        count, and left padding lies before every real token."""
        hidden, _ = self._run(input_ids, attention_mask, return_attention=False, cache=cache)
        return self._logits_or_loss(hidden, targets)

    @torch.no_grad()
    def forward_with_attention(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """Logits (B, T, V) and every layer's attention weights, a list of n_layer (B, H, T, T)."""
        hidden, attentions = self._run(input_ids, attention_mask, return_attention=True)
        return self.lm_head(hidden), attentions

    # ---- conversion to and from transformers' LlamaForCausalLM / MistralForCausalLM ----------

    @classmethod
    def from_hf(cls, hf_model: nn.Module) -> MiniLlama:
        """A MiniLlama holding the same weights as a transformers ``LlamaForCausalLM`` or
        ``MistralForCausalLM`` (default RoPE, no biases, SiLU, head size = hidden / heads)."""
        c: Any = hf_model.config  # a transformers config: its attributes are set at run time
        model_type = getattr(c, "model_type", type(hf_model).__name__)
        if model_type not in ("llama", "mistral"):
            raise ValueError(f"MiniLlama.from_hf needs a Llama or Mistral model, got {model_type!r}")
        rope = getattr(c, "rope_parameters", None) or {"rope_type": "default", "rope_theta": c.rope_theta}
        problems = []
        if rope.get("rope_type", "default") != "default":
            problems.append(f"rope_type {rope.get('rope_type')!r} (only the default RoPE)")
        if getattr(c, "attention_bias", False) or getattr(c, "mlp_bias", False):
            problems.append("attention_bias or mlp_bias (MiniLlama has no biases)")
        if c.hidden_act != "silu":
            problems.append(f"hidden_act {c.hidden_act!r} (SwiGLU uses silu)")
        if getattr(c, "head_dim", None) not in (None, c.hidden_size // c.num_attention_heads):
            problems.append(f"head_dim {c.head_dim} != hidden_size / num_attention_heads")
        if problems:
            raise ValueError("MiniLlama cannot hold this model: " + "; ".join(problems))
        config = LlamaConfig(
            vocab_size=c.vocab_size, context_length=c.max_position_embeddings, n_layer=c.num_hidden_layers,
            n_head=c.num_attention_heads, n_kv_heads=c.num_key_value_heads, n_embd=c.hidden_size,
            intermediate_size=c.intermediate_size, rope_theta=float(rope["rope_theta"]),
            sliding_window=getattr(c, "sliding_window", None) if model_type == "mistral" else None,
            rms_norm_eps=c.rms_norm_eps, tie_word_embeddings=bool(c.tie_word_embeddings),
        )
        model = cls(config)
        source = hf_model.state_dict()
        model.load_state_dict({name: source[name if name == "lm_head.weight" else "model." + name]
                               for name in model.state_dict()})
        weight = next(hf_model.parameters())
        return model.to(device=weight.device, dtype=weight.dtype).eval()  # where and as hf_model is

    def to_hf(self) -> nn.Module:
        """The same weights in a transformers ``LlamaForCausalLM``, or ``MistralForCausalLM`` when
        there is a sliding window (eval mode). ALiBi has no Llama equivalent and is refused."""
        c = self.config
        if c.position != "rope":
            raise ValueError(f"to_hf needs RoPE positions; transformers' Llama has no {c.position!r}")
        arguments = dict(
            vocab_size=c.vocab_size, max_position_embeddings=c.context_length, num_hidden_layers=c.n_layer,
            num_attention_heads=c.n_head, num_key_value_heads=c.n_kv_heads, hidden_size=c.n_embd,
            intermediate_size=c.intermediate_size, rms_norm_eps=c.rms_norm_eps,
            rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
            tie_word_embeddings=c.tie_word_embeddings, bos_token_id=None, eos_token_id=None, pad_token_id=None,
        )
        hf_model: nn.Module  # a LlamaForCausalLM or a MistralForCausalLM
        if c.sliding_window is None:
            from transformers import LlamaConfig as HFLlamaConfig
            from transformers import LlamaForCausalLM

            hf_model = LlamaForCausalLM(HFLlamaConfig(**arguments))
        else:
            from transformers import MistralConfig, MistralForCausalLM

            hf_model = MistralForCausalLM(MistralConfig(sliding_window=c.sliding_window, **arguments))
        hf_model.load_state_dict({(name if name == "lm_head.weight" else "model." + name): value
                                  for name, value in self.state_dict().items()})
        return hf_model.eval()
