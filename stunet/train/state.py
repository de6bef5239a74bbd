"""The train state pytree and its creation directly in its sharded layout (STYLE: Training step).

`TrainState` is `{step, params, opt_state, ema_params}`. `create_sharded_state` traces the
initialiser with `jax.eval_shape`, turns the logical axis names of the (boxed) parameters into
`NamedSharding`s through `config.mesh.rules`, and runs the initialiser under `jax.jit` with
those `out_shardings`: no device ever holds a full replica of an FSDP-sharded state, and the
state's shardings are the ones donation and checkpoint restore expect.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from stunet.parallel import sharding as sharding_lib
from stunet.train import optimizer as optimizer_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: number of updates applied
  params: Any  # {'unet': ..., 'text': ...}
  opt_state: Any
  ema_params: Any


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
  """`decay * ema + (1 - decay) * params` on trainable leaves; frozen leaves keep `ema` as is.

  Frozen leaves equal their parameters already, and skipping them keeps them bitwise equal
  (the formula can round in the last bit). `decay` may be traced (`ema_decay_at`).
  """
  def one(label, e, p):
    if label == optimizer_lib.FROZEN:
      return e
    return (decay * e.astype(jnp.float32) + (1.0 - decay) * p.astype(jnp.float32)).astype(e.dtype)
  return jax.tree.map(one, labels, ema, params)


def init_state(params: Any, tx) -> TrainState:
  """Fresh state from (boxed or plain) `params`: step 0, optimiser state, EMA = params."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    ema_params=params)


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
