"""The pure train step `train_step(state, batch) -> (state, metrics)` (STYLE: Training step).

One step: uint8 pixels -> [-1, 1] on device, the stage's conditioning channels if it has any
(`stunet.train.conditioning`: the model then sees `concat(x_t, cond)`), caption encoding (the
text encoder trains in the T2I stage and is frozen afterwards), the diffusion loss of SPEC §3
with classifier-free text dropout, gradients, the masked AdamW update and the EMA. All
randomness comes from `fold_in(key(seed), step)`, so a resumed run draws exactly what an
uninterrupted one would.

With `grad_accum_steps = k > 1` the batch is split into k microbatches that a `lax.scan`
runs one after another, averaging their gradients before the one update: activations are
those of B/k examples, so a global batch reaches sizes no single forward pass fits. Device
d's microbatch i is its own (i, i+k, ...)-th examples, so no example moves between devices.
Only trainable leaves are accumulated; a frozen encoder carries no gradient buffer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from stunet.diffusion import loss as loss_lib
from stunet.train import optimizer as optimizer_lib
from stunet.train import state as state_lib


def to_unit_range(pixels: jax.Array) -> jax.Array:
  """uint8 `[0, 255]` -> float32 `[-1, 1]`."""
  return pixels.astype(jnp.float32) / 127.5 - 1.0


def _freeze(tree: Any, labels: Any) -> Any:
  # Frozen leaves get no gradient at all: XLA then skips their weight-gradient computations
  # while gradients still flow through them to the trainable layers.
  return jax.tree.map(lambda l, p: jax.lax.stop_gradient(p) if l == optimizer_lib.FROZEN else p,
                      labels, tree)


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity for jax.jit
class StepFn:
  """Everything the step closes over; `__call__` is the pure step.

  Attributes:
    model: the denoiser module (`T2IUNet` or `STUNet`).
    text_module: the text encoder module.
    labels: TRAIN / FROZEN per parameter leaf of `{'unet', 'text'}`.
    tx: the optimiser (`optimizer.make_optimizer`).
    schedule: its learning-rate schedule (reported in the metrics).
    diffusion: the `diffusion` config section.
    modality: batch key of the pixels: 'image' or 'video'.
    ema_decay: EMA decay.
    ema_warmup: warm the EMA decay up as `min(ema_decay, (1 + n) / (10 + n))` at update n
      (`state.ema_decay_at`).
    seed: run seed; the step's key is `fold_in(key(seed), step)`.
    rules: logical axis rules for the activation constraints traced inside.
    condition: optional `(rng, x0) -> (target, cond)` (`stunet.train.conditioning`): the loss
      is taken on `target` and `cond` is concatenated on channels to every model input.
    grad_accum_steps: microbatches per update (module doc); 1 = the whole batch at once.
    null_text: optional `(text_params, text_emb) -> (null_emb, null_mask)` for the dropped
      captions (`StageSetup.null_text`); None = `diffusion.guidance.null_text` (zeros).
  """
  model: nn.Module
  text_module: nn.Module
  labels: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  diffusion: Any
  modality: str
  ema_decay: float
  seed: int
  ema_warmup: bool = True
  rules: Any = ()
  condition: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]] | None = None
  grad_accum_steps: int = 1
  null_text: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]] | None = None
  # Where the accumulated gradients live (params-shaped shardings; `jit_step` fills it in).
  # Pinned, so a FSDP-sharded weight's buffer is sharded too, not left to propagation.
  param_shardings: Any = None

  def __call__(self, state: state_lib.TrainState, batch: dict) -> tuple[state_lib.TrainState,
                                                                         dict]:
    with nn.logical_axis_rules(self.rules):
      return self._step(state, batch)

  def _step(self, state, batch):
    rng = jax.random.fold_in(jax.random.key(self.seed), state.step)
    loss_rng, unet_rng, text_rng = jax.random.split(rng, 3)
    x0 = to_unit_range(batch[self.modality])  # b (t) h w c
    cond = None
    if self.condition is not None:
      # A key of its own (not a fourth split) keeps unconditioned stages' draws unchanged.
      x0, cond = self.condition(jax.random.fold_in(rng, 1), x0)  # cond: b (t) h w c'
    ids, mask = batch["text_ids"], batch["text_mask"].astype(bool)  # b L
    inputs = {"x0": x0, "ids": ids, "mask": mask}
    if cond is not None:
      inputs["cond"] = cond
    rngs = (loss_rng, unet_rng, text_rng)
    if self.grad_accum_steps == 1:
      loss, aux, grads = self.loss_and_grads(state.params, inputs, rngs)
      text_dropped = jnp.mean(aux["text_dropped"].astype(jnp.float32))
    else:
      loss, text_dropped, grads = self._accumulate(state.params, inputs, rngs)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    stepped = optax.apply_updates(state.params, updates)
    # Frozen leaves are taken from the old params, not `p + 0`: that would turn -0.0 into +0.0.
    params = jax.tree.map(lambda l, new, old: old if l == optimizer_lib.FROZEN else new,
                          self.labels, stepped, state.params)
    ema_decay = state_lib.ema_decay_at(self.ema_decay, state.step, self.ema_warmup)
    ema = state_lib.ema_update(state.ema_params, params, ema_decay, self.labels)
    metrics = {
        "loss": loss,
        "grad_norm": optax.tree.norm(self._trainable(grads)),
        "learning_rate": self.schedule(state.step),
        "text_dropped": text_dropped,
    }
    new_state = state_lib.TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                                     ema_params=ema)
    return new_state, metrics

  def _trainable(self, tree):
    """`tree` (params-shaped) with None at the frozen leaves."""
    return jax.tree.map(lambda l, g: g if l == optimizer_lib.TRAIN else None, self.labels, tree)

  def loss_and_grads(self, params, inputs: dict, rngs: tuple) -> tuple[jax.Array, dict, Any]:
    """Mean loss, its aux and the gradients w.r.t. `params` on one (micro)batch.

    `inputs`: `x0` (b (t) h w c in [-1, 1]), `ids`, `mask` (b L) and optionally `cond`;
    `rngs`: the (diffusion loss, U-Net dropout, text dropout) keys.
    """
    loss_rng, unet_rng, text_rng = rngs
    cond = inputs.get("cond")
    text_trains = any(l == optimizer_lib.TRAIN for l in jax.tree.leaves(self.labels["text"]))

    def loss_fn(params):
      params = _freeze(params, self.labels)
      emb = self.text_module.apply({"params": params["text"]}, inputs["ids"], inputs["mask"],
                                   deterministic=not text_trains, rngs={"dropout": text_rng})

      def denoise(x_t, noise_cond, text_emb, text_mask):
        if cond is not None:
          x_t = jnp.concatenate([x_t, cond.astype(x_t.dtype)], axis=-1)
        return self.model.apply({"params": params["unet"]}, x_t, noise_cond, text_emb,
                                text_mask, train=True, rngs={"dropout": unet_rng})

      emb = emb.astype(jnp.float32)
      null_emb, null_mask = (self.null_text(params["text"], emb) if self.null_text is not None
                             else (None, None))
      per_example, aux = loss_lib.diffusion_loss(loss_rng, denoise, inputs["x0"], emb,
                                                 inputs["mask"], self.diffusion,
                                                 null_emb=null_emb, null_mask=null_mask)
      return jnp.mean(per_example), aux

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return loss, aux, grads

  def microbatches(self, inputs: dict) -> dict:
    """Each `(b, ...)` input as `(k, b / k, ...)`: microbatch i holds examples i, i + k, ...

    With the batch sharded in contiguous blocks, every device's microbatch comes from its own
    block (a local reshape), as long as k divides the per-device batch.
    """
    k = self.grad_accum_steps

    def split(x):
      if x.shape[0] % k:
        raise ValueError(f"optim.grad_accum_steps={k} does not divide the batch of "
                         f"{x.shape[0]} examples")
      return jnp.moveaxis(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 1, 0)
    return jax.tree.map(split, inputs)

  def _accumulate(self, params, inputs: dict, rngs: tuple):
    """Mean loss, mean text-drop rate and mean gradients over `grad_accum_steps` microbatches.

    Microbatch i draws its randomness from `split(key, k)[i]` of each of `rngs`.
    """
    k = self.grad_accum_steps
    labels, treedef = jax.tree.flatten(self.labels)
    trained = [i for i, label in enumerate(labels) if label == optimizer_lib.TRAIN]
    param_leaves = treedef.flatten_up_to(params)

    def body(carry, xs):
      loss_sum, dropped_sum, grad_sums = carry
      micro, micro_rngs = xs
      loss, aux, grads = self.loss_and_grads(params, micro, micro_rngs)
      grad_leaves = treedef.flatten_up_to(grads)
      grad_sums = [s + grad_leaves[i].astype(jnp.float32) for s, i in zip(grad_sums, trained)]
      dropped = jnp.mean(aux["text_dropped"].astype(jnp.float32))
      return (loss_sum + loss, dropped_sum + dropped, grad_sums), None

    shardings = (treedef.flatten_up_to(self.param_shardings) if self.param_shardings is not None
                 else [None] * len(param_leaves))

    def zeros(i):
      z = jnp.zeros(param_leaves[i].shape, jnp.float32)
      return z if shardings[i] is None else jax.lax.with_sharding_constraint(z, shardings[i])
    init = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), [zeros(i) for i in trained])
    per_micro_rngs = tuple(jax.random.split(r, k) for r in rngs)
    (loss_sum, dropped_sum, grad_sums), _ = jax.lax.scan(
        body, init, (self.microbatches(inputs), per_micro_rngs))
    # Frozen leaves get zeros: their optimiser branch never reads them, so XLA drops them.
    grad_leaves = [jnp.zeros_like(p) for p in param_leaves]
    for s, i in zip(grad_sums, trained):
      grad_leaves[i] = (s / k).astype(param_leaves[i].dtype)
    return loss_sum / k, dropped_sum / k, treedef.unflatten(grad_leaves)


def jit_step(step_fn: StepFn, state_shardings: Any, batch_shardings: dict,
             mesh: jax.sharding.Mesh):
  """`step_fn` jitted once with in/out shardings and the state donated.

  Returns a callable `(state, batch) -> (state, metrics)` that traces under `mesh`, so the
  model's logical activation constraints resolve to this mesh's axes.
  """
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  if step_fn.grad_accum_steps > 1:
    step_fn = dataclasses.replace(step_fn, param_shardings=state_shardings.params)
  jitted = jax.jit(step_fn, in_shardings=(state_shardings, batch_shardings),
                   out_shardings=(state_shardings, replicated), donate_argnums=(0,))

  def run(state, batch):
    with jax.set_mesh(mesh):
      return jitted(state, {k: batch[k] for k in batch_shardings})

  run.jitted = jitted
  return run
