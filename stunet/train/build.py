"""Assembles one stage's pieces from the config: model, text encoder, optimiser, init, step.

`stage_config` resolves the per-stage settings (`config.stage.<name>`) into the shared
sections, so everything downstream (data pipeline, optimiser, `config.json`, the resume
check) sees the values the stage really uses. `build_stage` returns a `StageSetup` holding the
modules, the parameter labels, the optimiser and a boxed initialiser for
`state.create_sharded_state`.

A pre-trained text encoder (`text.kind='t5'`) is frozen in every stage: its leaves are
labelled FROZEN (no optimiser state, no update), and `StageSetup.create_state` places its
weights into a fresh state after the state is created, so the jitted initialiser never
closes over the encoder's (possibly many GB of) host arrays.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from stunet.diffusion import config as diffusion_config_lib
from stunet.nn.config import UNetConfig
from stunet.parallel import sharding as sharding_lib
from stunet.text import factory as text_factory
from stunet.text import null_text as null_text_lib
from stunet.train import config as train_config_lib
from stunet.train import optimizer as optimizer_lib
from stunet.train import stages as stages_lib
from stunet.train import state as state_lib
from stunet.train import step as step_lib


def stage_config(config: ml_collections.ConfigDict,
                 stage: stages_lib.Stage) -> ml_collections.ConfigDict:
  """A copy of `config` with `config.stage.<stage>` folded into `optim` and `data`."""
  train_config_lib.validate(config)
  c = ml_collections.ConfigDict(config.to_dict())
  c.data.modality = stage.modality
  if c.model.cond_channels not in (0, stage.cond_channels):
    raise ValueError(f"model.cond_channels={c.model.cond_channels}, but the {stage.name!r} "
                     f"stage's model has {stage.cond_channels} conditioning channels (the "
                     f"stage sets it; leave model.cond_channels at 0)")
  c.model.cond_channels = stage.cond_channels
  if stage.name in c.stage:
    s = c.stage[stage.name]
    if s.num_steps:
      c.optim.num_steps = s.num_steps
    if s.learning_rate:
      c.optim.learning_rate = s.learning_rate
    if s.global_batch_size:
      c.data.global_batch_size = s.global_batch_size
  if stage.configure is not None:
    stage.configure(c)
  c.lock()
  return c


@dataclasses.dataclass(frozen=True)
class StageSetup:
  """One stage's modules and functions (see module doc)."""
  stage: stages_lib.Stage
  config: ml_collections.ConfigDict  # the stage-resolved config
  unet_config: UNetConfig
  model: nn.Module
  tokenizer: Any
  text_module: nn.Module
  labels: Any
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  init_params: Callable[[jax.Array], Any]  # key -> boxed {'unet', 'text'} params
  # Pixels of one example, (h, w, 3) or (t, h, w, 3); the model input adds
  # `unet_config.cond_channels` conditioning channels.
  example_shape: tuple[int, ...]
  text_pretrained: bool  # the text encoder's weights come from disk and stay frozen
  # `config.mesh.rules` as hashable pairs (`sharding.as_rules`), resolved once per stage.
  rules: tuple[tuple[str, Any], ...] = ()
  # `jax.eval_shape(init_params, key)`: the boxed parameter tree as ShapeDtypeStructs.
  abstract_params: Any = None

  @functools.cached_property
  def boxed_abstract_state(self) -> state_lib.TrainState:
    """`jax.eval_shape(self.boxed_init, key)`, from `abstract_params`: only the optimiser's
    init is traced, not the model's (seconds per trace for the test models, more for `paper`),
    and once per stage however many times a state is created or restored."""
    params = self.abstract_params
    if params is None:
      params = jax.eval_shape(self.init_params, jax.random.key(0))
    return jax.eval_shape(lambda p: state_lib.init_state(p, self.tx, self.labels), params)

  def abstract_state(self, mesh: jax.sharding.Mesh) -> state_lib.TrainState:
    """The unboxed state as ShapeDtypeStructs with `mesh`'s shardings (a restore target)."""
    return state_lib.abstract_state(self.boxed_init, mesh, self.rules, jax.random.key(0),
                                    boxed_abstract=self.boxed_abstract_state)

  def boxed_init(self, rng: jax.Array, parent_params: Any = None) -> state_lib.TrainState:
    """Fresh boxed state; with `parent_params`, started from the parent stage's weights."""
    params = self.init_params(rng)
    if parent_params is not None:
      params = self.stage.from_parent(parent_params, params)
    return state_lib.init_state(params, self.tx, self.labels)

  def create_state(self, mesh: jax.sharding.Mesh, rng: jax.Array, parent_params: Any = None
                   ) -> tuple[state_lib.TrainState, state_lib.TrainState]:
    """`(state, shardings)` of a fresh state on `mesh` (see `state.create_sharded_state`).

    Without a parent, a pre-trained text encoder's weights replace the random ones; with a
    parent they come from the parent (its frozen copy of the same weights).
    """
    # With a parent the initialiser maps the parent's weights in: its own trace stays exact.
    state, shardings = state_lib.create_sharded_state(
        self.boxed_init, mesh, self.rules, rng, parent_params,
        boxed_abstract=self.boxed_abstract_state if parent_params is None else None)
    if self.text_pretrained and parent_params is None:
      # Frozen, so held in `params` only (the EMA has none of it, `state` module doc).
      pretrained = self.pretrained_text_params()
      state = state.replace(
          params={**state.params, "text": place_pretrained_text(pretrained, state.params["text"])})
    return state, shardings

  def saved_state(self, state: state_lib.TrainState) -> state_lib.TrainState:
    """What a checkpoint holds of `state` (arrays or ShapeDtypeStructs): a pre-trained text
    encoder's weights are read from `config.text` (its `t5_dir`), not saved with every
    checkpoint, so they are `MaskedNode`s here; everything else as is."""
    if not self.text_pretrained:
      return state
    masked = jax.tree.map(lambda _: optax.MaskedNode(), state.params["text"])
    return state.replace(params={**state.params, "text": masked})

  def with_pretrained_text(self, saved: state_lib.TrainState,
                           target: state_lib.TrainState) -> state_lib.TrainState:
    """A restored `saved_state` made whole: the pre-trained text weights placed as
    `target.params['text']` (ShapeDtypeStructs with shardings) says."""
    if not self.text_pretrained:
      return saved
    text = place_pretrained_text(self.pretrained_text_params(), target.params["text"])
    return saved.replace(params={**saved.params, "text": text})

  def pretrained_text_params(self) -> Any:
    """The pre-trained text encoder's params (host arrays) for `config.text`."""
    variables = text_factory.load_pretrained_text_variables(self.config.text)
    if variables is None:
      raise ValueError(f"text.kind={self.config.text.kind!r} has no pre-trained weights")
    return variables["params"]

  def null_text(self, text_params: Any, text_emb: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(null_emb [L, d], null_mask [L])` of `config.diffusion.null_text` for captions
    embedded as `text_emb [b, L, d]` by `text_params` (traced inside the step / sampler)."""
    return null_text_lib.null_text(self.config.diffusion.get("null_text", "zeros"),
                                   self.tokenizer, self.text_module, text_params,
                                   text_emb.shape[-2], text_emb.shape[-1])

  def text_width(self) -> int:
    """Width of the text embeddings the encoder produces (the U-Net's cross-attention input)."""
    length = self.tokenizer.max_length
    ids = jnp.zeros((1, length), jnp.int32)
    mask = jnp.ones((1, length), bool)

    def embed(rng):
      return self.text_module.apply(self.text_module.init(rng, ids, mask), ids, mask)
    return int(jax.eval_shape(embed, jax.random.key(0)).shape[-1])

  def step_fn(self, seed: int | None = None) -> step_lib.StepFn:
    c = self.config
    return step_lib.StepFn(
        model=self.model, text_module=self.text_module, labels=self.labels, tx=self.tx,
        schedule=self.schedule, diffusion=c.diffusion, modality=self.stage.modality,
        ema_decay=c.optim.ema_decay, ema_warmup=c.optim.get("ema_warmup", True),
        seed=c.seed if seed is None else seed,
        rules=self.rules,
        condition=self.stage.conditioning(c) if self.stage.conditioning else None,
        grad_accum_steps=c.optim.get("grad_accum_steps", 1),
        null_text=self.null_text)


def stage_example_shape(config, unet_config: UNetConfig, modality: str) -> tuple[int, ...]:
  """Pixels of one example of the stage-resolved `config`; raises naming a field that misfits."""
  res, frames = config.data.resolution, config.data.frames
  if not res:
    raise ValueError("data.resolution must be set to train (the model's input size)")
  if modality == "image":
    unet_config.check_input(None, res, res)
    return (res, res, unet_config.in_channels)
  if not frames:
    raise ValueError("data.frames must be set to train the video stage")
  unet_config.check_input(frames, res, res)
  return (frames, res, res, unet_config.in_channels)


# The parameter shapes of a stage's initialiser, by what determines them: tracing the model's
# initialiser takes seconds (more at `paper` scale), and one process often builds the same stage
# several times (a run's stages, then sampling or evaluating them; an ablation's variants).
# The trees hold shapes only. Oldest entries go first beyond the bound.
_ABSTRACT_PARAMS: dict[Any, Any] = {}
_ABSTRACT_PARAMS_MAX = 64


def _abstract_params_key(stage: stages_lib.Stage, unet_config: UNetConfig,
                         text_config: ml_collections.ConfigDict,
                         example_shape: tuple[int, ...]) -> Any:
  """What `init_params`' shapes depend on: the stage (its model builder), the U-Net config,
  the text config and the example shape; None if any of it is unhashable."""
  key = (stage, unet_config, text_config.to_json_best_effort(sort_keys=True), example_shape)
  try:
    hash(key)
  except TypeError:
    return None
  return key


def build_stage(config: ml_collections.ConfigDict, stage: stages_lib.Stage,
                text_encoder: tuple[Any, nn.Module] | None = None) -> StageSetup:
  """Validates the config (naming bad fields) and builds the stage (nothing runs on devices).

  `text_encoder`, a `(tokenizer, module)` pair, replaces the one `text.kind` builds: shape-only
  tools (the AOT pod-fit check) pass an encoder of the right architecture without its files.
  """
  c = stage_config(config, stage)
  diffusion_config_lib.validate(c.diffusion)
  unet_config = UNetConfig.from_config(c.model)
  model = stage.build_model(unet_config)
  tokenizer, text_module = text_encoder or text_factory.make_text_encoder(c.text)
  length = tokenizer.max_length
  example_shape = stage_example_shape(c, unet_config, stage.modality)

  def init_params(rng):
    text_rng, unet_rng = jax.random.split(rng)
    ids = jnp.zeros((1, length), jnp.int32)
    mask = jnp.ones((1, length), bool)
    text_params = text_module.init(text_rng, ids, mask)["params"]
    emb = text_module.apply({"params": text_params}, ids, mask)  # boxes unbox in apply
    x = jnp.zeros((1,) + example_shape[:-1] + (example_shape[-1] + unet_config.cond_channels,),
                  jnp.float32)
    unet_params = model.init(unet_rng, x, jnp.zeros((1,), jnp.float32), emb, mask)["params"]
    return {"unet": unet_params, "text": text_params}

  text_pretrained = c.text.kind in text_factory.PRETRAINED_LOADERS
  # A pre-trained encoder's architecture is read from its files, which may change in place.
  cache_key = None if text_encoder is not None or text_pretrained else _abstract_params_key(
      stage, unet_config, c.text, example_shape)
  abstract_params = _ABSTRACT_PARAMS.get(cache_key) if cache_key is not None else None
  if abstract_params is None:
    abstract_params = jax.eval_shape(init_params, jax.random.key(0))
    if cache_key is not None:
      if len(_ABSTRACT_PARAMS) >= _ABSTRACT_PARAMS_MAX:
        _ABSTRACT_PARAMS.pop(next(iter(_ABSTRACT_PARAMS)))
      _ABSTRACT_PARAMS[cache_key] = abstract_params
  labels = stage.labels(abstract_params, text_frozen=text_pretrained,
                        trains=stage.trained_groups(c))
  num_steps = c.optim.num_steps
  schedule = optimizer_lib.learning_rate_schedule(c.optim, num_steps, c.optim.learning_rate)
  tx = optimizer_lib.make_optimizer(c.optim, labels, schedule)
  return StageSetup(stage=stage, config=c, unet_config=unet_config, model=model,
                    tokenizer=tokenizer, text_module=text_module, labels=labels,
                    schedule=schedule, tx=tx, init_params=init_params,
                    example_shape=example_shape, text_pretrained=text_pretrained,
                    rules=sharding_lib.as_rules(c.mesh.rules), abstract_params=abstract_params)


def place_pretrained_text(values: Any, target: Any) -> Any:
  """Host text encoder `values` as arrays with the shapes, dtypes and shardings of `target`.

  Each device receives only its shard of the host arrays, which works on every process of
  a multi-host mesh (all processes hold the same host values).
  """
  src = flax.traverse_util.flatten_dict(flax.core.unfreeze(nn.unbox(values)))
  dst = flax.traverse_util.flatten_dict(flax.core.unfreeze(target))
  if set(src) != set(dst):
    diff = sorted("/".join(k) for k in set(src) ^ set(dst))
    raise ValueError(f"the pre-trained text encoder's parameters do not match the encoder "
                     f"that text.kind builds (differing paths: {diff[:10]})")
  out = {}
  for key, leaf in dst.items():
    value = np.asarray(src[key])
    if value.shape != leaf.shape:
      raise ValueError(f"pre-trained text parameter {'/'.join(key)} has shape {value.shape}, "
                       f"the encoder built from the text config expects {leaf.shape}")
    value = value.astype(leaf.dtype)
    out[key] = jax.make_array_from_callback(leaf.shape, leaf.sharding,
                                            lambda index, v=value: v[index])
  return flax.traverse_util.unflatten_dict(out)
