"""Training stages (SPEC §2): what a stage trains, on which data, and where it starts from.

- `t2i`: the spatial T2I U-Net and the small byte-level text encoder, trained jointly from
  scratch on single frames (`data.modality = 'image'`, one random frame per clip). A
  pre-trained text encoder (`text.kind='t5'`) is not trained: it stays frozen in every stage.
- `video`: the T2I weights of a finished `t2i` run (or of an imported public T2I U-Net,
  `stunet.convert.imported_checkpoint`) inflated into a STUNet; the spatial U-Net
  and the text encoder are frozen and only the temporal layers train, on clips.

A stage is a small record in `STAGES`; later stages (`ssr`, `conditional`) register their own
with a different model, modality, trainable-leaf rule and parent.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import flax.linen as nn
import jax

from stunet.nn import inflate as inflate_lib
from stunet.nn.config import UNetConfig
from stunet.nn.stunet import STUNet
from stunet.nn.t2i_unet import T2IUNet
from stunet.train import optimizer as optimizer_lib

Params = Any


@dataclasses.dataclass(frozen=True)
class Stage:
  """One training stage.

  Attributes:
    name: key in `STAGES`, the workdir sub-directory and the `config.stage.<name>` section.
    modality: the data the stage trains on: 'image' (`[b h w 3]`) or 'video' (`[b t h w 3]`).
    build_model: `UNetConfig -> flax module` of the denoiser.
    trains: which parameter groups train: a subset of {'spatial', 'temporal', 'text'}
      (U-Net leaves as `stunet.nn.inflate.label_params` labels them, and the text encoder);
      the rest are frozen (no optimiser state, no update).
    parent: the stage whose checkpoint this one starts from, or None (from scratch).
    from_parent: `(parent_params, fresh_params) -> params` on boxed `{'unet', 'text'}` trees.
  """

  name: str
  modality: str
  build_model: Callable[[UNetConfig], nn.Module]
  trains: frozenset[str]
  parent: str | None = None
  from_parent: Callable[[Params, Params], Params] | None = None

  def labels(self, params: Params, text_frozen: bool = False) -> Params:
    """TRAIN / FROZEN per leaf of a `{'unet', 'text'}` params tree (boxes count as leaves).

    `text_frozen`: the text encoder is pre-trained, so it stays frozen whatever `trains` says.
    """
    def label(group):
      return optimizer_lib.TRAIN if group in self.trains else optimizer_lib.FROZEN
    text_label = optimizer_lib.FROZEN if text_frozen else label("text")
    return {"unet": jax.tree.map(label, inflate_lib.label_params(params["unet"])),
            "text": jax.tree.map(lambda _: text_label, params["text"], is_leaf=_is_box)}


def _copy_values(source: Params, target: Params) -> Params:
  """`target`'s boxes (logical names) holding `source`'s values; shapes must match."""
  src = flax.traverse_util.flatten_dict(flax.core.unfreeze(source))
  dst = flax.traverse_util.flatten_dict(flax.core.unfreeze(target))
  if set(src) != set(dst):
    diff = sorted("/".join(k) for k in set(src) ^ set(dst))
    raise ValueError(f"text encoder parameters of the parent checkpoint do not match the "
                     f"text config (differing paths: {diff[:10]})")
  out = {}
  for key, leaf in dst.items():
    value = nn.unbox(src[key])
    out[key] = leaf.replace_boxed(value) if isinstance(leaf, nn.meta.AxisMetadata) else value
  return flax.traverse_util.unflatten_dict(out)


def _inflate_from_t2i(parent: Params, fresh: Params) -> Params:
  return {"unet": inflate_lib.inflate(parent["unet"], fresh["unet"]),
          "text": _copy_values(parent["text"], fresh["text"])}


def _is_box(x) -> bool:
  return isinstance(x, nn.meta.AxisMetadata)


STAGES: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
  if stage.name in STAGES:
    raise ValueError(f"stage {stage.name!r} is already registered")
  STAGES[stage.name] = stage
  return stage


register(Stage(name="t2i", modality="image", build_model=T2IUNet,
               trains=frozenset({"spatial", "temporal", "text"})))
register(Stage(name="video", modality="video", build_model=STUNet,
               trains=frozenset({"temporal"}),
               parent="t2i", from_parent=_inflate_from_t2i))


def get_stage(name: str) -> Stage:
  if name not in STAGES:
    raise ValueError(f"stages: unknown stage {name!r}; registered: {tuple(STAGES)}")
  return STAGES[name]


def parse_stages(stages: str) -> list[Stage]:
  """`config.stages` ('t2i,video') -> Stage records in order."""
  names = [s.strip() for s in str(stages).split(",") if s.strip()]
  if not names:
    raise ValueError("config.stages is empty; expected e.g. 't2i,video'")
  return [get_stage(n) for n in names]
