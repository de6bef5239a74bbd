"""A small 3-D conv network trained on `shapes_video` attributes: features for FVD-shapes.

FVD (SPEC §6) needs a video network's features. I3D is trained on Kinetics and unrelated to our
data, so we train our own (`frechet.FVD_NAME` says so): three 3x3x3 conv stages with ReLU and
pooling, global average and max pools (the feature vector) and a linear head predicting which colours,
shapes, sizes, motions and speeds appear in a clip (multi-label: clips hold one or two
objects). Training takes a few hundred steps on clips generated on the fly
(`shapes_video.generate_example`), minutes on a CPU; weights are cached as ``.npz`` arrays with a
JSON description of the settings, never pickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Sequence

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stunet.data import shapes_scene
from stunet.data import shapes_video
from stunet.nn import layers

# Label layout of the multi-label head: one block per vocabulary.
VOCABULARIES = (("colour", shapes_scene.COLOUR_NAMES), ("shape", shapes_scene.SHAPES),
                ("size", shapes_scene.SIZES), ("motion", shapes_scene.MOTIONS),
                ("speed", shapes_scene.SPEEDS))
NUM_LABELS = sum(len(v) for _, v in VOCABULARIES)
_CONV3D_AXES = (None, None, None, "conv_in", "conv_out")


def label_offset(name: str) -> int:
  offset = 0
  for vocab_name, vocab in VOCABULARIES:
    if vocab_name == name:
      return offset
    offset += len(vocab)
  raise ValueError(f"unknown vocabulary {name!r}; expected one of "
                   f"{[n for n, _ in VOCABULARIES]}")


class VideoFeatureNet(nn.Module):
  """``[b t h w 3]`` uint8 or [-1, 1] clips -> (features ``[b 2 widths[-1]]``, label logits)."""
  widths: Sequence[int] = (16, 32, 64)

  @nn.compact
  def __call__(self, video: jax.Array) -> tuple[jax.Array, jax.Array]:
    if video.dtype == jnp.uint8:
      video = video.astype(jnp.float32) / 127.5 - 1.0
    x = video  # b t h w c
    for i, width in enumerate(self.widths):
      x = nn.Conv(width, (3, 3, 3), padding="SAME",
                  kernel_init=layers.partitioned(layers.default_kernel_init(), _CONV3D_AXES),
                  bias_init=layers.partitioned(nn.initializers.zeros_init(), ("conv_out",)),
                  name=f"conv{i}")(x)
      x = nn.relu(x)
      if i < len(self.widths) - 1:
        # Halve space each stage; time too once it is long enough to keep motion visible.
        t_stride = 2 if x.shape[1] >= 8 else 1
        x = nn.avg_pool(x, (t_stride, 2, 2), strides=(t_stride, 2, 2))
    # Max pooling keeps small objects visible against the background that dominates the mean.
    features = jnp.concatenate([x.mean(axis=(1, 2, 3)), x.max(axis=(1, 2, 3))], -1)  # b 2d
    logits = layers.dense(NUM_LABELS, axes=("embed", "vocab"), name="head")(features)
    return features, logits


def multi_hot(example: dict) -> np.ndarray:
  """``[NUM_LABELS]`` 0/1 labels of the vocabulary words present in a dataset example."""
  labels = np.zeros(NUM_LABELS, np.float32)
  for name, _ in VOCABULARIES:
    for j in range(int(example["num_objects"])):
      labels[label_offset(name) + int(example[name][j])] = 1.0
  return labels


def generate_clips(config: str, split: str, start: int, count: int
                   ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
  """Clips ``[count t h w 3]``, multi-hot labels and the examples of a `shapes_video` config."""
  configs = {c.name: c for c in shapes_video.BUILDER_CONFIGS}
  if config not in configs:
    raise ValueError(f"unknown shapes_video config {config!r}")
  examples = [shapes_video.generate_example(configs[config], split, i)
              for i in range(start, start + count)]
  if "video" not in examples[0]:
    raise ValueError(f"config {config!r} holds images; the feature net needs clips")
  return (np.stack([e["video"] for e in examples]), np.stack([multi_hot(e) for e in examples]),
          examples)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """How a feature net is trained (the cache key).

  Attributes:
    data_config: `shapes_video` config whose train split the clips come from.
    steps / batch_size / learning_rate / seed: the optimisation.
    num_clips: distinct training clips (cycled).
    widths: conv widths of `VideoFeatureNet`.
  """
  data_config: str = "demo"
  steps: int = 300
  batch_size: int = 16
  learning_rate: float = 3e-3
  seed: int = 0
  num_clips: int = 512
  widths: tuple[int, ...] = (16, 32, 64)

  def key(self) -> str:
    text = json.dumps(dataclasses.asdict(self), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class FeatureNet:
  """A trained `VideoFeatureNet`: feature extraction (the FVD-shapes hook) and predictions."""

  def __init__(self, params: dict, settings: TrainSettings):
    self.params = params
    self.settings = settings
    self.module = VideoFeatureNet(widths=settings.widths)
    self._apply = jax.jit(lambda p, v: self.module.apply({"params": p}, v))

  def _run(self, clips, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    clips = np.asarray(clips)
    if clips.ndim != 5 or clips.dtype != np.uint8 or clips.shape[-1] != 3:
      raise ValueError(f"clips must be uint8 [n, t, h, w, 3], got {clips.dtype} {clips.shape}")
    features, logits = [], []
    for i in range(0, len(clips), batch_size):
      chunk = clips[i:i + batch_size]
      pad = batch_size - len(chunk)
      # A fixed batch shape compiles once.
      padded = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], np.uint8)])
      f, l = self._apply(self.params, padded)
      features.append(np.asarray(f)[:len(chunk)])
      logits.append(np.asarray(l)[:len(chunk)])
    return np.concatenate(features), np.concatenate(logits)

  def extract(self, clips, batch_size: int = 32) -> np.ndarray:
    """Features ``[n d]`` of uint8 clips ``[n t h w 3]``."""
    return self._run(clips, batch_size)[0]

  def logits(self, clips, batch_size: int = 32) -> np.ndarray:
    """Label logits ``[n NUM_LABELS]``."""
    return self._run(clips, batch_size)[1]


def train(settings: TrainSettings = TrainSettings(), log_every: int = 0) -> FeatureNet:
  """Trains a feature net on freshly generated clips of ``settings.data_config``."""
  if settings.steps < 1 or settings.batch_size < 1 or settings.num_clips < settings.batch_size:
    raise ValueError(f"need steps >= 1 and num_clips >= batch_size >= 1, got {settings}")
  clips, labels, _ = generate_clips(settings.data_config, "train", 0, settings.num_clips)
  module = VideoFeatureNet(widths=settings.widths)
  params = nn.meta.unbox(module.init(jax.random.key(settings.seed), clips[:1])["params"])
  optimizer = optax.adam(settings.learning_rate)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, video, target):
    def loss_fn(p):
      _, logits = module.apply({"params": p}, video)
      return optax.sigmoid_binary_cross_entropy(logits, target).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  order = np.random.default_rng(settings.seed)
  for i in range(settings.steps):
    batch = order.choice(settings.num_clips, settings.batch_size, replace=False)
    params, opt_state, loss = step(params, opt_state, clips[batch], labels[batch])
    if log_every and (i + 1) % log_every == 0:
      print(f"feature net step {i + 1}/{settings.steps}: loss {float(loss):.4f}")
  return FeatureNet(jax.device_get(params), settings)


def save(net: FeatureNet, directory: str) -> str:
  """Writes ``feature_net_<key>.npz`` (arrays) and ``.json`` (settings); returns the npz path."""
  os.makedirs(directory, exist_ok=True)
  base = os.path.join(directory, f"feature_net_{net.settings.key()}")
  flat = traverse_util.flatten_dict(net.params, sep="/")
  np.savez(base + ".npz", **{k: np.asarray(v) for k, v in flat.items()})
  with open(base + ".json", "w") as f:
    json.dump(dataclasses.asdict(net.settings), f, indent=2, sort_keys=True)
  return base + ".npz"


def load(path: str) -> FeatureNet:
  """Reads a feature net written by `save` (``path`` is the ``.npz`` file)."""
  json_path = path[:-len(".npz")] + ".json" if path.endswith(".npz") else None
  if json_path is None or not os.path.exists(path) or not os.path.exists(json_path):
    raise ValueError(f"{path!r} is not a saved feature net (expected an .npz with a .json "
                     f"beside it)")
  with open(json_path) as f:
    raw = json.load(f)
  raw["widths"] = tuple(raw["widths"])
  settings = TrainSettings(**raw)
  with np.load(path, allow_pickle=False) as data:
    params = traverse_util.unflatten_dict({k: jnp.asarray(data[k]) for k in data.files},
                                          sep="/")
  return FeatureNet(params, settings)


def load_or_train(directory: str, settings: TrainSettings = TrainSettings(),
                  log_every: int = 0) -> FeatureNet:
  """The cached net for ``settings`` under ``directory``, trained and saved if absent."""
  path = os.path.join(directory, f"feature_net_{settings.key()}.npz")
  if os.path.exists(path):
    return load(path)
  net = train(settings, log_every)
  save(net, directory)
  return net
