"""Adam-mini (Zhang et al., 2024): Adam with one second moment per parameter block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from mlx_optim import functional as F
from mlx_optim.base import Optimizer, Tunable, leaves
from mlx_optim.registry import register


@register
class AdamMini(Optimizer):
    r"""Adam-mini: Adam with one second moment per parameter block (attention head, tensor), not per entry.

    The partition is read from each parameter's path in the tree (the torch version reads
    ``model.named_parameters()``; the paths here are the same dotted names, e.g.
    ``"model.layers.0.self_attn.q_proj.weight"``). With decoupled weight decay
    :math:`p \leftarrow p(1-\eta\lambda)` first (skipped for paths containing ``norm`` or
    ``ln_f``), each parameter is updated as

    .. math::
        m_t = \operatorname{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
        v^{(b)}_t = \operatorname{lerp}\big(v^{(b)}_{t-1}, \operatorname{mean}_{i\in b} g_{t,i}^2, 1-\beta_2\big) \\
        p_t = p_{t-1} - \frac{\eta}{1-\beta_1^t}\, \frac{m_t}{\sqrt{v^{(b)}_t}/\sqrt{1-\beta_2^t} + \epsilon}

    where the blocks :math:`b` are, by the first rule whose substring occurs in the path:

    * ``embed_blocks`` (``embed``, ``embd``, ``wte``, ``lm_head.weight``, ``output.weight``): one
      block per entry, i.e. plain Adam;
    * ``qk_blocks`` (``q_proj.weight``, ``k_proj.weight``, ``wq.weight``, ``wk.weight`` and the
      MLX ``nn.MultiHeadAttention`` spellings ``query_proj.weight``, ``key_proj.weight``, an
      addition): one block per head, the flattened tensor cut into chunks of
      ``num_embeds**2 // num_heads`` entries;
    * ``attn.attn.weight`` / ``attn.qkv.weight`` (fused QKV): viewed as
      ``(num_query_groups, num_heads // num_query_groups + 2, -1)``, one block per row of that view;
    * anything else: the whole tensor is one block (a single scalar second moment).

    The rules are class attributes (``embed_blocks``, ``qk_blocks``, ``qkv_blocks``,
    ``no_decay_blocks``) that can be replaced on an instance before its first update. State:
    the first moment is full size; the second moment is full only for embeddings.

    Paper: "Adam-mini: Use Fewer Learning Rates To Gain More" (Zhang et al., 2024), arXiv:2406.16793.
    Reference: ``pytorch_optimizer.AdamMini``, same keywords and defaults; it takes the model, this class the
    gradient tree with its paths. ``model_sharding`` (torch.distributed all-reduce of the block sums) has no
    effect: MLX runs this optimizer in one process.

    Args:
        learning_rate: Step size :math:`\eta`: a float or a schedule (a callable of the step). Default ``1.0``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1): decay rates of the first moment and of the block
            second moments. Default ``(0.9, 0.999)``.
        weight_decay: Decoupled weight decay :math:`\lambda` (>= 0). Default ``0.1``.
        model_sharding: Accepted for compatibility; no effect (no sharded all-reduce). Default ``False``.
        num_embeds (int): Embedding dimension (> 0) of the attention layers; a multiple of ``num_heads``.
            Default ``2048``.
        num_heads (int): Number of attention heads (> 0). Default ``32``.
        num_query_groups (int | None): Number of query groups (grouped-query attention, > 0, divides
            ``num_heads``); ``None`` means ``num_heads``. Default ``None``.
        eps: :math:`\epsilon` (>= 0) added to the denominator. Default ``1e-8``.
        maximize: Maximize the objective instead of minimizing it (the gradient is negated). Default ``False``.
        state_dtype: dtype of the optimizer state. Default ``None``: float32 for bfloat16/float16 parameters, the
            parameter's dtype otherwise; ``mx.bfloat16`` stores the state with stochastic rounding.
    """

    name = "adammini"
    family = "memory-efficient"
    reference = "pytorch_optimizer.AdamMini"

    embed_blocks: tuple[str, ...] = ("embed", "embd", "wte", "lm_head.weight", "output.weight")
    qk_blocks: tuple[str, ...] = (
        "k_proj.weight",
        "q_proj.weight",
        "wq.weight",
        "wk.weight",
        "query_proj.weight",
        "key_proj.weight",
    )
    qkv_blocks: tuple[str, ...] = ("attn.attn.weight", "attn.qkv.weight")
    no_decay_blocks: tuple[str, ...] = ("norm", "ln_f")

    def __init__(
        self,
        learning_rate: Tunable = 1.0,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: Tunable = 0.1,
        model_sharding: bool = False,
        num_embeds: int = 2048,
        num_heads: int = 32,
        num_query_groups: int | None = None,
        eps: Tunable = 1e-8,
        maximize: bool = False,
        *,
        state_dtype: mx.Dtype | None = None,
    ):
        super().__init__(learning_rate, maximize=maximize, state_dtype=state_dtype)
        self._betas(betas, 2)
        self._hyper("weight_decay", weight_decay, 0.0)
        self._hyper("eps", eps, 0.0)
        num_query_groups = num_heads if num_query_groups is None else num_query_groups
        self._check("num_embeds", num_embeds, 0, None, "(]")
        self._check("num_heads", num_heads, 0, None, "(]")
        self._check("num_query_groups", num_query_groups, 0, None, "(]")
        if num_embeds % num_heads:
            raise ValueError(f"AdamMini: num_embeds={num_embeds} must be divisible by num_heads={num_heads}")
        if num_heads % num_query_groups:
            raise ValueError(
                f"AdamMini: num_heads={num_heads} must be divisible by num_query_groups={num_query_groups}"
            )
        self.model_sharding = model_sharding
        self.num_embeds, self.num_heads, self.num_query_groups = num_embeds, num_heads, num_query_groups
        self._initializing = False
        self._paths: dict[int, str] = {}

    # --- the partition, from the parameter path
    def block_kind(self, path: str) -> str:
        """``"embed"``, ``"head"``, ``"qkv"`` or ``"tensor"``: how ``path`` is cut into second-moment blocks."""
        if any(b in path for b in self.embed_blocks):
            return "embed"
        if any(b in path for b in self.qk_blocks):
            return "head"
        if any(b in path for b in self.qkv_blocks):
            return "qkv"
        return "tensor"

    def init(self, parameters: Any) -> None:
        # The base class creates the state tree and calls init_single without paths; defer to a pass with paths.
        self._initializing = True
        try:
            super().init(parameters)
        finally:
            self._initializing = False
        for path, _, p, s in leaves(parameters, parameters, self.state):
            if not s:
                self._leaf_path = path
                self.init_single(p, s)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        if self._initializing:
            return
        path, kind = self._leaf_path, self.block_kind(self._leaf_path)
        state["m"] = self.zeros(parameter)
        if kind == "embed":
            state["v"] = self.zeros(parameter)
        elif kind == "head":
            per_head = self.num_embeds * self.num_embeds // self.num_heads
            if parameter.size % per_head:
                raise ValueError(
                    f"AdamMini: '{path}' has {parameter.size} entries, not a multiple of "
                    f"num_embeds**2 // num_heads = {per_head}"
                )
            state["v_head"] = self.zeros(parameter, (parameter.size // per_head,))
        elif kind == "qkv":
            rows = self.num_heads // self.num_query_groups + 2
            if parameter.size % (self.num_query_groups * rows):
                raise ValueError(
                    f"AdamMini: '{path}' has {parameter.size} entries, not divisible into "
                    f"({self.num_query_groups}, {rows}, -1) blocks"
                )
            state["v_qkv"] = self.zeros(parameter, (self.num_query_groups, rows))
        else:
            state["v_mean"] = self.zeros(parameter, ())

    def step_scalars(self, hp) -> None:
        hp.bc1 = hp.bias_correction("beta1")
        hp.bc2_sqrt = mx.sqrt(hp.bias_correction("beta2"))

    def prepare(self, gradients: dict, parameters: dict) -> None:
        self._paths = {id(s): path for path, _, _, s in leaves(gradients, parameters, self.state)}

    def update_single(self, g: mx.array, p: mx.array, state: dict) -> mx.array:
        hp = self.hp
        self._leaf_path = path = self._paths[id(state)]
        if not any(b in path for b in self.no_decay_blocks):
            p, _ = self.apply_weight_decay(p, g, decouple=True)
        m = F.torch_lerp(state["m"], g, hp.one_minus_beta1)
        state["m"] = m
        if "v" in state:  # embeddings: Adam
            v = hp.beta2 * state["v"] + hp.one_minus_beta2 * mx.square(g)
            state["v"] = v
            return p - (hp.lr / hp.bc1) * m / (mx.sqrt(v) / hp.bc2_sqrt + hp.eps)
        key = next(k for k in ("v_head", "v_qkv", "v_mean") if k in state)
        blocks = state[key].shape
        g_blocks = g.reshape(*blocks, -1)
        v = F.torch_lerp(state[key], mx.mean(mx.square(g_blocks), axis=-1), hp.one_minus_beta2)
        state[key] = v
        h = mx.sqrt(v) / hp.bc2_sqrt + hp.eps
        update = m.reshape(*blocks, -1) / mx.expand_dims(h * hp.bc1, -1)
        return p - hp.lr * update.reshape(p.shape)
