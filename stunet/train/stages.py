"""Training stages (SPEC §2): what a stage trains, on which data, and where it starts from.

- `t2i`: the spatial T2I U-Net and the small byte-level text encoder, trained jointly from
  scratch on single frames (`data.modality = 'image'`, one random frame per clip). A
  pre-trained text encoder (`text.kind='t5'`) is not trained: it stays frozen in every stage.
- `video`: the T2I weights of a finished `t2i` run (or of an imported public T2I U-Net,
  `stunet.convert.imported_checkpoint`) inflated into a STUNet; the spatial U-Net
  and the text encoder are frozen and only the temporal layers train, on clips (the paper).
  `stage.video.trainable` makes that an ablation axis (`VIDEO_TRAINABLE`): 'temporal' (the
  paper), 'temporal+text' (also the text encoder, when it is ours: a pre-trained one stays
  frozen) or 'all'. The temporal layers include the temporal text pathway of
  `model.temporal_text` (its FiLM and cross-attention weights live in the temporal modules).

- `conditional` (SPEC §5): the video model with 4 more input channels (masked conditioning
  video + mask; their `conv_in` weights zero, so it starts as the video model exactly),
  fine-tuned (spatial and temporal layers) on random image-to-video / inpainting /
  outpainting / cinemagraph tasks.
- `ssr` (SPEC §4): a STUNet trained from scratch on windows of `stage.ssr.window_frames`
  frames at `stage.ssr.resolution`, conditioned on the noise-augmented, bilinearly upsampled
  low-resolution clip (4 input channels, `stunet.conditioning.ssr`).
- `tsr` (SPEC §1): the keyframes + temporal super-resolution baseline's TSR model: the T2I
  weights inflated into a STUNet with 4 zero-initialised input channels (keyframes in place +
  keyframe mask, `stunet.conditioning.keyframes_tsr`), trained (spatial and temporal layers; the new
  input channels need the spatial `conv_in`) to generate the full clip from every
  `stage.tsr.keyframe_interval`-th frame.
- `t2i_style` (SPEC §5): the T2I model fine-tuned (spatial layers) on one style image with a
  style-token caption; sampling blends its spatial weights into the video model.

A stage is a small record in `STAGES`. Conditioning hook: a stage with `cond_channels > 0`
names a `conditioning` factory (`stunet.train.conditioning`): `config -> condition(rng, x0)
-> (target, cond)`, run inside the train step, whose `cond` is concatenated on channels to
the noisy input (`model.cond_channels` is set from the stage). `configure` folds a stage's
own settings (`config.stage.<name>`) into the shared sections and validates them, naming the
field.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import ml_collections

from stunet.conditioning import expand_channels
from stunet.conditioning import keyframes_tsr
from stunet.conditioning import masks
from stunet.conditioning import ssr as ssr_lib
from stunet.conditioning import style_image
from stunet.nn import inflate as inflate_lib
from stunet.nn.config import UNetConfig
from stunet.nn.stunet import STUNet
from stunet.nn.t2i_unet import T2IUNet
from stunet.train import conditioning as conditioning_lib
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
    cond_channels: input channels the conditioning adds (`model.cond_channels` of the stage).
    conditioning: `config -> condition(rng, x0) -> (target, cond)` (see
      `stunet.train.conditioning`); required when `cond_channels > 0`.
    configure: `config -> None`, run on the (unlocked) stage-resolved config: validates
      `config.stage.<name>` and folds it into the shared sections (data size, ...).
    make_data: `(config, mesh=, tokenizer=) -> iterator` of the stage's batches instead of
      `stunet.data.pipeline.make_train_iterator` (e.g. the single style image).
    trainable: `(option, groups)` pairs that `config.stage.<name>.trainable` chooses from in
      place of `trains` (see `trained_groups`); empty: `trains` always.
  """

  name: str
  modality: str
  build_model: Callable[[UNetConfig], nn.Module]
  trains: frozenset[str]
  parent: str | None = None
  from_parent: Callable[[Params, Params], Params] | None = None
  cond_channels: int = 0
  conditioning: Callable[[ml_collections.ConfigDict],
                         conditioning_lib.ConditionFn] | None = None
  configure: Callable[[ml_collections.ConfigDict], None] | None = None
  make_data: Callable[..., Any] | None = None
  trainable: tuple[tuple[str, frozenset[str]], ...] = ()

  def __post_init__(self):
    if bool(self.cond_channels) != (self.conditioning is not None):
      raise ValueError(f"stage {self.name!r}: cond_channels and conditioning go together")

  def trained_groups(self, config: ml_collections.ConfigDict) -> frozenset[str]:
    """The parameter groups that train under `config`: `trains`, or the groups that
    `config.stage.<name>.trainable` names where the stage has that option."""
    if not self.trainable:
      return self.trains
    options = dict(self.trainable)
    section = config.stage[self.name] if self.name in config.get("stage", {}) else {}
    choice = section.get("trainable", self.trainable[0][0])
    if choice not in options:
      raise ValueError(f"config.stage.{self.name}.trainable={choice!r}: must be one of "
                       f"{tuple(options)}")
    return options[choice]

  def labels(self, params: Params, text_frozen: bool = False,
             trains: frozenset[str] | None = None) -> Params:
    """TRAIN / FROZEN per leaf of a `{'unet', 'text'}` params tree (boxes count as leaves).

    `text_frozen`: the text encoder is pre-trained, so it stays frozen whatever `trains` says.
    `trains`: the groups that train (default: the stage's `trains`; see `trained_groups`).
    """
    trains = self.trains if trains is None else trains

    def label(group):
      return optimizer_lib.TRAIN if group in trains else optimizer_lib.FROZEN
    text_label = optimizer_lib.FROZEN if text_frozen else label("text")
    return {"unet": jax.tree.map(label, inflate_lib.label_params(params["unet"])),
            "text": jax.tree.map(lambda _: text_label, params["text"], is_leaf=_is_box)}


def _copy_values(source: Params, target: Params, what: str = "text encoder") -> Params:
  """`target`'s boxes (logical names) holding `source`'s values; shapes must match."""
  src = flax.traverse_util.flatten_dict(flax.core.unfreeze(source))
  dst = flax.traverse_util.flatten_dict(flax.core.unfreeze(target))
  if set(src) != set(dst):
    diff = sorted("/".join(k) for k in set(src) ^ set(dst))
    raise ValueError(f"{what} parameters of the parent checkpoint do not match the "
                     f"config (differing paths: {diff[:10]})")
  out = {}
  for key, leaf in dst.items():
    value = nn.unbox(src[key])
    if value.shape != nn.unbox(leaf).shape:
      raise ValueError(f"{what} parameter {'/'.join(key)} of the parent checkpoint has shape "
                       f"{tuple(value.shape)}, the model built from the config expects "
                       f"{tuple(nn.unbox(leaf).shape)}")
    out[key] = leaf.replace_boxed(value) if isinstance(leaf, nn.meta.AxisMetadata) else value
  return flax.traverse_util.unflatten_dict(out)


def _inflate_from_t2i(parent: Params, fresh: Params) -> Params:
  return {"unet": inflate_lib.inflate(parent["unet"], fresh["unet"]),
          "text": _copy_values(parent["text"], fresh["text"])}


def _copy_from_parent(parent: Params, fresh: Params) -> Params:
  return {"unet": _copy_values(parent["unet"], fresh["unet"], "U-Net"),
          "text": _copy_values(parent["text"], fresh["text"])}


def _expand_from_video(parent: Params, fresh: Params) -> Params:
  """The video model's weights with zero `conv_in` weights for the conditioning channels."""
  unet = expand_channels.expand_input_channels(parent["unet"], CONDITIONAL_CHANNELS)
  return {"unet": _copy_values(unet, fresh["unet"], "U-Net"),
          "text": _copy_values(parent["text"], fresh["text"])}


def _inflate_with_keyframe_channels(parent: Params, fresh: Params) -> Params:
  """T2I weights inflated into the TSR STUNet; zero `conv_in` weights for the keyframes."""
  t2i = expand_channels.expand_input_channels(parent["unet"], keyframes_tsr.COND_CHANNELS)
  return {"unet": inflate_lib.inflate(t2i, fresh["unet"]),
          "text": _copy_values(parent["text"], fresh["text"])}


def _configure_conditional(c: ml_collections.ConfigDict) -> None:
  s = c.stage.conditional
  tasks = tuple(s.tasks)
  unknown = sorted(set(tasks) - set(masks.TASKS))
  if not tasks or unknown:
    raise ValueError(f"stage.conditional.tasks must be a non-empty subset of {masks.TASKS}, "
                     f"got {tasks}")
  if not 0.0 < s.min_box <= s.max_box <= 1.0:
    raise ValueError(f"stage.conditional.min_box/max_box: need 0 < min_box <= max_box <= 1, "
                     f"got {s.min_box!r}, {s.max_box!r}")


def _positive(value, field: str) -> int:
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{field} must be a positive integer, got {value!r}")
  return value


def _configure_ssr(c: ml_collections.ConfigDict) -> None:
  """Resolves the SSR sizes (written back, so `config.json` holds the values used)."""
  s = c.stage.ssr
  resolution = _positive(s.resolution or c.data.resolution, "stage.ssr.resolution")
  low = _positive(s.low_resolution or resolution // 2, "stage.ssr.low_resolution")
  if low >= resolution:
    raise ValueError(f"stage.ssr.low_resolution={low} must be below stage.ssr.resolution="
                     f"{resolution}")
  window = _positive(s.window_frames or c.data.frames, "stage.ssr.window_frames")
  ssr_lib.check_aug_range(s.noise_aug_min, s.noise_aug_max,
                          "stage.ssr.noise_aug_min/noise_aug_max")
  if not 0.0 <= s.sample_noise_aug < 1.0:
    raise ValueError(f"stage.ssr.sample_noise_aug must be in [0, 1), got "
                     f"{s.sample_noise_aug!r}")
  if not isinstance(s.window_overlap, int) or not 0 <= s.window_overlap < window:
    raise ValueError(f"stage.ssr.window_overlap must be an integer in [0, window_frames - 1] "
                     f"= [0, {window - 1}], got {s.window_overlap!r}")
  if not isinstance(s.window_stride, int) or not 0 <= s.window_stride <= window:
    raise ValueError(f"stage.ssr.window_stride must be an integer in [0, window_frames] = "
                     f"[0, {window}] (0: window_frames - window_overlap), got "
                     f"{s.window_stride!r}")
  s.resolution, s.low_resolution, s.window_frames = resolution, low, window
  c.data.resolution, c.data.frames = resolution, window
  if s.builder_config:
    c.data.builder_config = s.builder_config


def _configure_tsr(c: ml_collections.ConfigDict) -> None:
  keyframes_tsr.check_interval(c.stage.tsr.keyframe_interval, c.data.frames)


def _configure_t2i_style(c: ml_collections.ConfigDict) -> None:
  s = c.stage.t2i_style
  if not s.image:
    raise ValueError("stage.t2i_style.image must name the style image (PNG or JPEG)")
  if not str(s.caption).strip():
    raise ValueError("stage.t2i_style.caption is empty; give a caption with the style token, "
                     "e.g. 'an image in sks style'")


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
# `stage.video.trainable`: the paper trains the temporal layers only (first = default).
VIDEO_TRAINABLE = (("temporal", frozenset({"temporal"})),
                   ("temporal+text", frozenset({"temporal", "text"})),
                   ("all", frozenset({"spatial", "temporal", "text"})))
register(Stage(name="video", modality="video", build_model=STUNet,
               trains=frozenset({"temporal"}),
               parent="t2i", from_parent=_inflate_from_t2i, trainable=VIDEO_TRAINABLE))
CONDITIONAL_CHANNELS = 4  # masked conditioning video (3) + mask (1)
register(Stage(name="conditional", modality="video", build_model=STUNet,
               trains=frozenset({"spatial", "temporal"}),
               parent="video", from_parent=_expand_from_video,
               cond_channels=CONDITIONAL_CHANNELS,
               conditioning=conditioning_lib.masked_tasks, configure=_configure_conditional))
register(Stage(name="ssr", modality="video", build_model=STUNet,
               trains=frozenset({"spatial", "temporal", "text"}),
               cond_channels=ssr_lib.COND_CHANNELS,
               conditioning=conditioning_lib.ssr_from_high_res, configure=_configure_ssr))
register(Stage(name="tsr", modality="video", build_model=STUNet,
               trains=frozenset({"spatial", "temporal"}),
               parent="t2i", from_parent=_inflate_with_keyframe_channels,
               cond_channels=keyframes_tsr.COND_CHANNELS,
               conditioning=conditioning_lib.keyframes_in_place, configure=_configure_tsr))
register(Stage(name="t2i_style", modality="image", build_model=T2IUNet,
               trains=frozenset({"spatial"}),
               parent="t2i", from_parent=_copy_from_parent, configure=_configure_t2i_style,
               make_data=style_image.make_style_iterator))


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
