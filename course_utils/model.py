"""MiniGPT: the GPT-2 architecture in one readable file.

Names follow GPT-2 (``wte``, ``wpe``, ``h``, ``ln_1``, ``c_attn``...) so that a Hugging Face
``GPT2LMHeadModel`` checkpoint maps onto this model one tensor at a time. Shapes use
B = batch, T = sequence length, C = ``n_embd``, H = ``n_head``, D = C / H (head size),
V = ``vocab_size``.

The architecture (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"):
learned token and position embeddings, ``n_layer`` pre-norm blocks of masked multi-head
self-attention and a GELU feed-forward network (four times wider), a final LayerNorm, and an
LM head whose weight is the token embedding (weight tying).

Taught in: lesson 01 (``causal_mask``), lesson 02 (the whole model, ``from_hf``), lesson 04 (the
``cache`` argument; the caches themselves are in ``kv_cache.py``), lesson 06 (``head_mask``,
``forward_with_attention``). ``CourseModel`` and ``attend`` are shared with lesson 08's
MiniLlama (``llama.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

# GPT-2 weights stored as Conv1D (in, out) in transformers; nn.Linear stores (out, in).
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Activation names under which transformers' GPT-2 computes the tanh approximation of GELU.
TANH_GELU_NAMES = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


@dataclass
class GPTConfig:
    """Hyper-parameters of a GPT-2 style model."""

    vocab_size: int = 4096
    context_length: int = 256  # the largest T, called n_positions in GPT-2
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 256
    dropout: float = 0.0  # on embeddings and residual branches; none on attention weights
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_kv_heads(self) -> int:
        """Heads with keys and values of their own: every head, in GPT-2."""
        return self.n_head

    # Not fields: GPT-2 attends to every earlier position; how a model card names the architecture.
    sliding_window = None
    description = "GPT-2 architecture"

    def parameter_count(self) -> int:
        """Parameters of a MiniGPT with this configuration, by formula (no model built):
        V C (token embeddings, tied to the LM head) + T_max C (positions)
        + L (12 C^2 + 13 C) (attention 4 C^2 + 4 C biases, MLP 8 C^2 + 5 C, two LayerNorms 4 C) + 2 C."""
        C, L, V = self.n_embd, self.n_layer, self.vocab_size
        return V * C + self.context_length * C + L * (12 * C * C + 13 * C) + 2 * C

    def build(self) -> MiniGPT:
        """A freshly initialised MiniGPT of this configuration."""
        return MiniGPT(self)


def causal_mask(
    seq_len: int, device: torch.device | str | None = None, n_past: int = 0, window: int | None = None
) -> torch.Tensor:
    """Boolean (T, n_past + T) mask, True where query i may attend to key j, i.e. where
    j <= n_past + i. With no cached past it is the square (T, T) mask of j <= i.

    Built with ``triu``: the strict upper triangle (the future) is what must be hidden. With a
    sliding ``window`` W, keys more than W - 1 positions back are hidden too (``tril``): query i
    sees keys n_past + i - W < j <= n_past + i, itself and the W - 1 before it (Mistral's rule).
    """
    if window is not None and window < 1:
        raise ValueError(f"window must be a positive integer or None, got {window}")
    ones = torch.ones(seq_len, n_past + seq_len, dtype=torch.bool, device=device)
    mask = ~torch.triu(ones, diagonal=n_past + 1)
    if window is not None:
        mask &= torch.triu(ones, diagonal=n_past - window + 1)
    return mask


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    return_attention: bool = False,
    window: int | None = None,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Causal scaled dot-product attention, the one implementation both MiniGPT and MiniLlama use.

    q: (B, H, T, D) queries of the newest T positions; k, v: (B, H, T_all, D) keys and values of
    the newest T_all positions (T_past = T_all - T of them from a cache). key_mask: bool
    (B, 1, T, T_keys) with T_keys >= T_all, True where attending is allowed (its last T_all
    columns are used), or None for the causal mask alone. window: a sliding window (see
    ``causal_mask``). bias: (H, T, T_all) added to the scores (ALiBi), or None. Returns the output
    (B, H, T, D) and, when ``return_attention``, the weights (B, H, T, T_all).
    """
    T, T_all = q.shape[2], k.shape[2]
    n_past = T_all - T
    mask = None if key_mask is None else key_mask[..., -T_all:]
    if window is not None:
        windowed = causal_mask(T, q.device, n_past, window)
        mask = windowed if mask is None else mask & windowed
    if return_attention:
        # The explicit path: scores, mask, softmax, weighted sum. Same result, slower.
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, T, T_all)
        if bias is not None:
            scores = scores + bias
        scores = scores.masked_fill(~(causal_mask(T, q.device, n_past) if mask is None else mask), float("-inf"))
        weights = F.softmax(scores, dim=-1)
        return weights @ v, weights
    if bias is not None:
        allowed = causal_mask(T, q.device, n_past) if mask is None else mask
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~allowed, float("-inf"))), None
    if mask is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None
    if n_past == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True), None
    if T == 1:
        return F.scaled_dot_product_attention(q, k, v), None  # one new query: every key is in its past
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, q.device, n_past)), None




class KVCache(Protocol):
    """What the model needs of a KV cache (lesson 04 builds four in ``kv_cache.py``): how many
    positions it holds, and ``extend`` to add this step's keys and values of one layer and get
    back all of them."""

    def __len__(self) -> int: ...

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def check_token_ids(input_ids: torch.Tensor, vocab_size: int) -> None:
    """Refuse ``input_ids`` that are not (batch, seq) token ids of an embedding's index type
    (torch.long or torch.int) or hold ids outside [0, vocab_size): the type first, since a small
    integer type compared with vocab_size would wrap around."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (batch, seq), got {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.long, torch.int):
        raise ValueError(f"input_ids must hold token ids of dtype torch.long or torch.int, got {input_ids.dtype}")
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
        raise ValueError(
            f"input_ids must lie in [0, {vocab_size - 1}] (the model's vocabulary), got values "
            f"from {int(input_ids.min())} to {int(input_ids.max())}"
        )


def positions_from_attention_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids (B, T) for a left-padded batch: count only real tokens, as GPT-2 does.

    Padding positions get position 1 (their value never matters: nothing attends to them).
    """
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 1)


def positions_and_key_mask(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, n_past: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Position ids (B or 1, T) of the T new tokens after ``n_past`` cached ones, and the key mask
    (B, 1, T, n_past + T) that ``attend`` takes: causal and not padding, or None without an
    ``attention_mask`` (B, n_past + T)."""
    B, T = input_ids.shape
    device = input_ids.device
    if attention_mask is None:
        return torch.arange(n_past, n_past + T, device=device).unsqueeze(0), None
    if attention_mask.shape != (B, n_past + T):
        raise ValueError(
            f"attention_mask must have shape (batch, cached + new tokens) = {(B, n_past + T)}, "
            f"got {tuple(attention_mask.shape)}"
        )
    positions = positions_from_attention_mask(attention_mask)[:, n_past:]
    # Causal and not padding; a padding query attends to itself so no row is all -inf.
    allowed = causal_mask(T, device, n_past) & attention_mask.bool()[:, None, None, :]
    rows = torch.arange(T, device=device)
    itself = torch.zeros(T, n_past + T, dtype=torch.bool, device=device)
    itself[rows, n_past + rows] = True
    return positions, allowed | itself


def split_heads(t: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) -> (B, H, T, D), D = C / H: head h holds channels h*D .. (h+1)*D - 1 of each position."""
    B, T, C = t.shape
    return t.view(B, T, n_head, C // n_head).transpose(1, 2)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    """(B, H, T, D) -> (B, T, H*D): the heads side by side again, the inverse of ``split_heads``."""
    B, H, T, D = y.shape
    return y.transpose(1, 2).contiguous().view(B, T, H * D)


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention: each position attends to itself and the past."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_size = config.head_size
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # queries, keys, values
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)  # output projection
        self.resid_dropout = nn.Dropout(config.dropout)
        # (H,) factors for each head's output before c_proj mixes the heads (0 removes a head),
        # or None; lesson 06 sets it to ablate heads (``attention.heads_scaled``).
        self.head_mask: torch.Tensor | None = None

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        return_attention: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, C). key_mask: bool (B, 1, T, T_all), True where attending is allowed, or
        None for the plain causal mask (T_all = T_past + T keys when ``cache`` holds T_past
        positions of this ``layer``). Returns the output (B, T, C) and, when asked, the attention
        weights (B, H, T, T_all)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (split_heads(t, self.n_head) for t in (q, k, v))  # each head its own D-wide slice
        if cache is not None:
            k, v = cache.extend(layer, k, v)  # new queries attend to all cached keys too
        y, weights = attend(q, k, v, key_mask, return_attention)
        if self.head_mask is not None:
            y = y * self.head_mask.to(y.dtype)[:, None, None]  # (B, H, T, D) scaled head by head
        return self.resid_dropout(self.c_proj(merge_heads(y))), weights


class MLP(nn.Module):
    """The position-wise feed-forward network: expand 4x, GELU (tanh form, as GPT-2), project."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        return_attention: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attn(self.ln_1(x), key_mask, return_attention, cache, layer)
        x = x + attended
        x = x + self.mlp(self.ln_2(x))
        return x, weights


class CourseModel(nn.Module):
    """What the course's own models share (MiniGPT here, MiniLlama in ``llama.py``), so that
    ``generate``, the speculative loop, the evaluation and the ``Trainer`` take either:
    ``forward(input_ids, targets=None, attention_mask=None, cache=None)``, a KV cache, and a
    ``config`` with ``vocab_size``, ``context_length``, ``n_layer`` and ``n_embd``."""

    config: Any  # GPTConfig here, LlamaConfig in llama.py
    lm_head: nn.Linear

    def num_parameters(self) -> int:
        """Trainable parameters, a tied embedding counted once."""
        return sum(p.numel() for p in self.parameters())

    def _logits_or_loss(self, hidden: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """The LM head on final hidden states (B, T, C): logits (B, T, V), or with ``targets``
        (B, T) the mean cross-entropy against them, ignoring targets equal to -100."""
        logits = self.lm_head(hidden)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)

    def _check_input_ids(self, input_ids: torch.Tensor, n_past: int = 0) -> None:
        check_token_ids(input_ids, self.config.vocab_size)
        T = n_past + input_ids.shape[1]
        if T > self.config.context_length:
            raise ValueError(
                f"input_ids has {T} tokens (cached ones included) but the model's context_length is "
                f"{self.config.context_length}; pass at most {self.config.context_length} tokens"
            )


class MiniGPT(CourseModel):
    """A GPT-2 language model: ``MiniGPT(config)(input_ids)`` gives logits (B, T, V)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embeddings
        self.wpe = nn.Embedding(config.context_length, config.n_embd)  # position embeddings
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: one (V, C) matrix, used twice
        self.apply(self._init_weights)
        # GPT-2 scales the residual projections by 1/sqrt(number of residual additions).
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _run(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        return_attention: bool,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Final hidden states (B, T, C) and, when asked, each layer's attention (B, H, T, T_all)."""
        n_past = len(cache) if cache is not None else 0
        self._check_input_ids(input_ids, n_past)
        positions, key_mask = positions_and_key_mask(input_ids, attention_mask, n_past)
        x = self.drop(self.wte(input_ids) + self.wpe(positions))
        attentions = []
        for layer, block in enumerate(self.h):
            x, weights = block(x, key_mask, return_attention, cache, layer)
            if weights is not None:
                attentions.append(weights)
        return self.ln_f(x), attentions

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """input_ids: (B, T) token ids, T <= context_length.

        Returns the logits (B, T, V) for the next token at every position; or, when
        ``targets`` (B, T) is given, the mean cross-entropy loss (a scalar) against them,
        ignoring targets equal to -100. ``attention_mask`` (B, T) marks real tokens with 1 and
        (left) padding with 0; with a cache it covers the cached tokens too, (B, T_past + T).
        ``cache``: a ``KVCache`` holding the keys and values of the tokens before ``input_ids``;
        it is extended with this call's, so the next call passes only the tokens after these.
        """
        hidden, _ = self._run(input_ids, attention_mask, return_attention=False, cache=cache)
        return self._logits_or_loss(hidden, targets)

    @torch.no_grad()
    def forward_with_attention(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, T, V) and every layer's attention weights, a list of n_layer (B, H, T, T)."""
        hidden, attentions = self._run(input_ids, attention_mask, return_attention=True)
        return self.lm_head(hidden), attentions

    # ---- conversion to and from transformers' GPT2LMHeadModel -----------------------------

    @classmethod
    def from_hf(cls, hf_model: nn.Module) -> MiniGPT:
        """A MiniGPT holding the same weights as a transformers ``GPT2LMHeadModel``.

        GPT-2 stores its linear layers as ``Conv1D`` with weights (in, out); ``nn.Linear``
        stores (out, in), so those weights are transposed on the way in.
        """
        hf_config: Any = hf_model.config  # a transformers config: its attributes are set at run time
        if getattr(hf_config, "model_type", None) != "gpt2":
            raise ValueError(
                f"MiniGPT.from_hf needs a GPT-2 model (model_type 'gpt2'), got "
                f"{getattr(hf_config, 'model_type', type(hf_model).__name__)!r}"
            )
        if hf_config.activation_function not in TANH_GELU_NAMES:
            raise ValueError(
                f"MiniGPT uses GPT-2's tanh GELU; activation_function must be one of "
                f"{TANH_GELU_NAMES}, got {hf_config.activation_function!r}"
            )
        inner = hf_config.n_inner or 4 * hf_config.n_embd
        if inner != 4 * hf_config.n_embd:
            raise ValueError(f"MiniGPT needs n_inner = 4 * n_embd, got n_inner={inner}")
        config = GPTConfig(
            vocab_size=hf_config.vocab_size,
            context_length=hf_config.n_positions,
            n_layer=hf_config.n_layer,
            n_head=hf_config.n_head,
            n_embd=hf_config.n_embd,
            layer_norm_epsilon=hf_config.layer_norm_epsilon,
        )
        model = cls(config)
        source = hf_model.state_dict()
        state = {}
        for name in model.state_dict():
            hf_value = source["transformer." + name] if name != "lm_head.weight" else source.get(
                "lm_head.weight", source["transformer.wte.weight"]
            )
            state[name] = hf_value.t() if name.endswith(CONV1D_WEIGHTS) else hf_value
        model.load_state_dict(state)
        weight = next(hf_model.parameters())
        return model.to(device=weight.device, dtype=weight.dtype).eval()  # where and as hf_model is

    def hf_config_dict(self) -> dict:
        """The arguments of the equivalent ``transformers.GPT2Config``."""
        c = self.config
        return dict(
            vocab_size=c.vocab_size, n_positions=c.context_length, n_embd=c.n_embd,
            n_layer=c.n_layer, n_head=c.n_head, activation_function="gelu_new",
            resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=0.0,
            layer_norm_epsilon=c.layer_norm_epsilon, tie_word_embeddings=True,
            bos_token_id=None, eos_token_id=None,
        )

    def to_hf(self) -> nn.Module:
        """The same weights in a transformers ``GPT2LMHeadModel`` (eval mode)."""
        from transformers import GPT2Config, GPT2LMHeadModel  # here, not above: importing transformers takes seconds

        hf_model = GPT2LMHeadModel(GPT2Config(**self.hf_config_dict()))
        state = {}
        for name, value in self.state_dict().items():
            hf_name = name if name == "lm_head.weight" else "transformer." + name
            state[hf_name] = value.t().contiguous() if name.endswith(CONV1D_WEIGHTS) else value
        hf_model.load_state_dict(state)  # strict: every tensor maps onto exactly one tensor
        hf_model.tie_weights()
        return hf_model.eval()
