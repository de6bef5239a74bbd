"""The train state pytree and its creation directly in its sharded layout (STYLE: Training step).

`TrainState` is `{step, params, opt_state, ema_params}`. Frozen leaves (the T2I weights in the
video stage, a pre-trained text encoder everywhere) are held once, in `params`: their optimiser
state and their EMA are `optax.MaskedNode()` (empty), so neither device memory nor checkpoints
hold a second copy. `TrainState.ema_weights` is the full tree that sampling and the next stage
use: the EMA of the trainable leaves and the frozen leaves' weights (which equal their EMA).

`create_sharded_state` traces the initialiser with `jax.eval_shape`, turns the logical axis
names of the (boxed) parameters into `NamedSharding`s through `config.mesh.rules`, and runs the
initialiser under `jax.jit` with those `out_shardings`: no device ever holds a full replica of
an FSDP-sharded state, and the state's shardings are the ones donation and checkpoint restore
expect.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from stunet.parallel import sharding as sharding_lib
from stunet.train import optimizer as optimizer_lib


# The layout of `TrainState` in checkpoints (their meta's 'state_format'): 2 = frozen leaves
# have no EMA (`MaskedNode`) and a pre-trained text encoder is not saved (it is read from its
# files, `StageSetup.saved_state`); 1 (no field) = every leaf saved in params and in the EMA.
STATE_FORMAT = 2


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: number of updates applied
  params: Any  # {'unet': ..., 'text': ...}
  opt_state: Any
  ema_params: Any  # params-shaped; frozen leaves are `optax.MaskedNode()`

  @property
  def ema_weights(self) -> Any:
    """The EMA weights of every leaf: `ema_params`, with the frozen leaves taken from `params`
    (a frozen leaf's EMA would equal it)."""
    return merge_frozen(self.ema_params, self.params)


def _is_masked(x) -> bool:
  return isinstance(x, optax.MaskedNode)


def merge_frozen(ema: Any, params: Any) -> Any:
  """`ema` with each `MaskedNode` leaf replaced by the same leaf of `params`."""
  return jax.tree.map(lambda e, p: p if _is_masked(e) else e, ema, params, is_leaf=_is_masked)


def mask_like(tree: Any, reference: Any) -> Any:
  """`tree` with `MaskedNode()` wherever `reference` (same structure otherwise) has one."""
  return jax.tree.map(lambda r, x: r if _is_masked(r) else x, reference, tree, is_leaf=_is_masked)


def mask_frozen(tree: Any, labels: Any) -> Any:
  """`tree` (params-shaped, boxed or plain) with `MaskedNode()` at the FROZEN leaves."""
  return jax.tree.map(lambda l, x: optax.MaskedNode() if l == optimizer_lib.FROZEN else x,
                      labels, tree)


def ema_decay_at(decay: float, step: jax.Array, warmup: bool = True) -> jax.Array | float:
  """The EMA decay of update `step` (0 = the first): `min(decay, (1 + step) / (10 + step))`
  with `warmup` (as TF's `ExponentialMovingAverage(num_updates=...)`), else `decay`.

  Without a warm-up, decay 0.999 keeps 0.999**1000 = 37% of the random init after 1000
  updates, and it is the EMA that samples and the next stage (inflation) use.
  """
  if not warmup:
    return decay
  n = jnp.asarray(step, jnp.float32)
  return jnp.minimum(jnp.float32(decay), (1.0 + n) / (10.0 + n))


def ema_update(ema: Any, params: Any, decay: float | jax.Array, labels: Any) -> Any:
  """`decay * ema + (1 - decay) * params` on trainable leaves; frozen leaves have no EMA
  (`MaskedNode`, see module doc) and stay so. `decay` may be traced (`ema_decay_at`).
  """
  def one(label, e, p):
    if label == optimizer_lib.FROZEN:
      return e  # MaskedNode
    return (decay * e.astype(jnp.float32) + (1.0 - decay) * p.astype(jnp.float32)).astype(e.dtype)
  return jax.tree.map(one, labels, ema, params)


def init_state(params: Any, tx, labels: Any) -> TrainState:
  """Fresh state from (boxed or plain) `params`: step 0, optimiser state, and EMA = params on
  the TRAIN leaves of `labels` (the frozen ones hold none)."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    ema_params=mask_frozen(params, labels))


def state_shardings(boxed_abstract_state: TrainState, mesh: jax.sharding.Mesh,
                    rules) -> TrainState:
  """NamedShardings of the unboxed state; optimiser moments follow their parameters' names
  (optax maps over the boxes, so the moments stay boxed with the same names)."""
  return sharding_lib.tree_shardings(boxed_abstract_state, mesh, rules)


def create_sharded_state(boxed_init: Callable[..., TrainState], mesh: jax.sharding.Mesh,
                         rules, *args, boxed_abstract: TrainState | None = None
                         ) -> tuple[TrainState, TrainState]:
  """Runs `boxed_init(*args)` (a state with `nn.Partitioned` params) straight into shardings.

  `boxed_abstract`, `jax.eval_shape(boxed_init, *args)` where the caller has it already
  (`StageSetup.boxed_abstract_state`), saves tracing the model's initialiser once more.

  Returns:
    `(state, shardings)`: the unboxed state placed on `mesh` and its NamedSharding tree.
  """
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding_lib.rules_for_mesh(rules, mesh)):
    abstract = (boxed_abstract if boxed_abstract is not None
                else jax.eval_shape(boxed_init, *args))
    shardings = state_shardings(abstract, mesh, rules)
    state = jax.jit(lambda *a: nn.unbox(boxed_init(*a)), out_shardings=shardings)(*args)
  return state, shardings


def abstract_state(boxed_init: Callable[..., TrainState], mesh: jax.sharding.Mesh, rules,
                   *args, boxed_abstract: TrainState | None = None) -> TrainState:
  """ShapeDtypeStructs carrying this mesh's shardings: the target for a checkpoint restore.

  `boxed_abstract` as in `create_sharded_state`.
  """
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding_lib.rules_for_mesh(rules, mesh)):
    abstract = (boxed_abstract if boxed_abstract is not None
                else jax.eval_shape(boxed_init, *args))
    shardings = state_shardings(abstract, mesh, rules)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      nn.unbox(abstract), shardings)
