"""Defaults and validation of the training sections: `optim`, `mesh`, `ckpt`, `log`, `sample`
and the per-stage settings `stage` (STYLE: Configs, Training step, Checkpoints).

Only the numbers live here; `stunet.config.default_config` assembles them with the model,
text, diffusion and data sections.
"""

from __future__ import annotations

import ml_collections


def optim_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.learning_rate = 1e-4
  c.warmup_steps = 100
  c.decay_steps = 0  # 0: total steps of the stage (cosine decay to end_lr_fraction * lr)
  c.end_lr_fraction = 0.1
  c.b1 = 0.9
  c.b2 = 0.99
  c.weight_decay = 0.0
  c.grad_clip = 1.0
  c.ema_decay = 0.999
  # EMA warm-up: update n (from 0) uses min(ema_decay, (1 + n) / (10 + n)), so the average
  # forgets the random init (without it, 0.999 still holds 37% of it after 1000 steps).
  c.ema_warmup = True
  c.num_steps = 1000
  # Gradient accumulation: each update averages the gradients of this many microbatches of
  # data.global_batch_size / grad_accum_steps examples, run one after another (activation
  # memory of one microbatch). It must divide the per-device batch.
  c.grad_accum_steps = 1
  return c


def stage_config() -> ml_collections.ConfigDict:
  """Per-stage settings; 0 / '' fall back to the shared `optim` and `data` fields."""
  c = ml_collections.ConfigDict()
  # T2I stage (SPEC §2): the spatial U-Net and the small text encoder on single frames.
  c.t2i = ml_collections.ConfigDict()
  c.t2i.num_steps = 0  # 0: optim.num_steps
  c.t2i.learning_rate = 0.0  # 0: optim.learning_rate
  c.t2i.global_batch_size = 0  # 0: data.global_batch_size (frames, one per clip)
  # Video stage: inflate the T2I weights into a STUNet, train only the temporal layers.
  c.video = ml_collections.ConfigDict()
  c.video.num_steps = 0
  c.video.learning_rate = 0.0
  c.video.global_batch_size = 0
  # The T2I run to inflate from: a stage directory (holding checkpoints/), a
  # checkpoints/<step> directory, or a workdir of public weights written by
  # experiments/convert.py (needs a pre-trained text.kind); '' = the t2i stage of this workdir.
  c.video.init_from = ""
  c.video.init_from_ema = True  # inflate the EMA weights (what T2I samples use)
  # What trains (SPEC §2): "temporal" (the paper: the temporal layers, including the temporal
  # text pathway of model.temporal_text), "temporal+text" (also our text encoder; a
  # pre-trained one stays frozen) or "all" (also the spatial U-Net).
  c.video.trainable = "temporal"
  # Conditional stage (SPEC §5): the video model fine-tuned with 4 zero-initialised input
  # channels (masked conditioning video + mask) on random image-to-video, inpainting,
  # outpainting and cinemagraph tasks (`stunet.conditioning.masks.random_task`).
  c.conditional = ml_collections.ConfigDict()
  c.conditional.num_steps = 0
  c.conditional.learning_rate = 0.0
  c.conditional.global_batch_size = 0
  c.conditional.init_from = ""  # '' = the video stage of this workdir (or as for video)
  c.conditional.init_from_ema = True
  c.conditional.tasks = ("image_to_video", "inpainting", "outpainting", "cinemagraph")
  c.conditional.min_box = 0.25  # sides of the random regions, as fractions of the frame
  c.conditional.max_box = 0.75
  # Spatial super-resolution stage (SPEC §4): a STUNet from scratch conditioned on the
  # bilinearly upsampled, noise-augmented low-resolution clip, trained on windows of
  # `window_frames` frames at `resolution`; the low-resolution clip is made on device.
  c.ssr = ml_collections.ConfigDict()
  c.ssr.num_steps = 0
  c.ssr.learning_rate = 0.0
  c.ssr.global_batch_size = 0
  c.ssr.builder_config = ""  # dataset variant at the high resolution; '' = data.builder_config
  c.ssr.resolution = 0  # output size; 0 = data.resolution
  c.ssr.low_resolution = 0  # input size (the base model's); 0 = resolution // 2
  c.ssr.window_frames = 0  # T' of the training clips and sampling windows; 0 = data.frames
  c.ssr.noise_aug_min = 0.0  # training augmentation levels t_aug ~ U[min, max]
  c.ssr.noise_aug_max = 0.3
  c.ssr.sample_noise_aug = 0.1  # augmentation level of the base samples at sampling
  # Temporal MultiDiffusion at sampling: consecutive windows share `window_overlap` frames
  # (the paper: 2), or start every `window_stride` frames when that is > 0.
  c.ssr.window_overlap = 2
  c.ssr.window_stride = 0
  # Temporal super-resolution stage (SPEC §1; the keyframes + TSR cascade baseline of the
  # ablation, `stunet.conditioning.keyframes_tsr`): the T2I weights inflated into a STUNet with 4
  # zero-initialised input channels, trained on full clips to fill the frames between every
  # `keyframe_interval`-th frame (the keyframes, given in place with a mask).
  c.tsr = ml_collections.ConfigDict()
  c.tsr.num_steps = 0
  c.tsr.learning_rate = 0.0
  c.tsr.global_batch_size = 0
  c.tsr.init_from = ""  # the T2I run to inflate (as for video); '' = the t2i stage of this workdir
  c.tsr.init_from_ema = True
  c.tsr.keyframe_interval = 2  # k: keyframes are frames 0, k, 2k, ...; must divide data.frames
  # Style stage (SPEC §5): the T2I model fine-tuned on one style image whose caption carries
  # a style token; `experiments/sample.py --style_workdir` blends its spatial weights in.
  c.t2i_style = ml_collections.ConfigDict()
  c.t2i_style.num_steps = 0
  c.t2i_style.learning_rate = 0.0
  c.t2i_style.global_batch_size = 0
  c.t2i_style.init_from = ""  # '' = the t2i stage of this workdir
  c.t2i_style.init_from_ema = True
  c.t2i_style.image = ""  # path of the style image (PNG/JPEG)
  c.t2i_style.caption = "an image in sks style"  # the caption with the style token
  return c


PARAM_SHARDING_CHECKS = ("warn", "error", "off")


def mesh_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.axes = ("data", "fsdp", "tensor")
  c.shape = (1, -1, 1)  # -1 = all remaining devices
  # Multi-slice runs: how many slices (joined over DCN) each axis of `shape` spans; the rest of
  # each axis lies within a slice (ICI). () = all slices along the first axis (`data`), so
  # only the gradient reduction crosses DCN.
  c.dcn_shape = ()
  # A mesh axis whose size is not a product of the slice's torus dims (a context axis of 2 on
  # v5p-128's 4x4x4) takes part of a physical dim only when this is set.
  c.allow_split_physical_axes = False
  # Logical axis -> mesh axis (or None). Parameters: FSDP over their largest axes (over the
  # context axis too, which otherwise would hold copies of them); tensor parallelism over
  # heads / MLP; activations over the batch, and a video's frames over `context` when the
  # mesh has that axis (frame parallelism; absent axes are ignored).
  c.rules = (
      ("activation_batch", ("data", "fsdp")),
      ("activation_frames", "context"),
      ("activation_height", None),
      ("activation_width", None),
      ("activation_channels", "tensor"),
      ("activation_length", None),
      ("activation_embed", "tensor"),
      ("conv_in", None),
      ("conv_out", ("fsdp", "context")),
      ("embed", ("fsdp", "context")),
      ("mlp", "tensor"),
      ("heads", "tensor"),
      ("vocab", None),
      ("relpos_buckets", None),
      ("norm", None),
  )
  # Parameter-sharding check when a stage's state is created or restored
  # (`sharding.check_sufficiently_sharded`): one device may hold at most (1 + max_param_excess)
  # times its share under perfect sharding over fsdp x context x tensor; beyond that the stage "warn"s
  # (logs the largest unsharded leaves), "error"s, or skips the check ("off").
  c.param_sharding_check = "warn"
  c.max_param_excess = 0.1
  return c


def ckpt_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.every_steps = 500
  c.keep_last = 3
  c.keep_every = 0  # 0 = none; otherwise also keep every K-th step permanently
  c.async_save = True
  # Replica-parallel saving only for arrays whose per-replica slice has at least this many
  # bytes (0 = always, orbax's default); see stunet/train/checkpoint.py.
  c.replica_parallel_min_bytes = 1 << 20
  return c


def log_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Metrics are fetched from the device every N steps (and before each checkpoint); every
  # step's values are written to metrics.jsonl / TensorBoard.
  c.every_steps = 50
  c.sample_every_steps = 0  # 0 = only at the end of a stage
  c.num_samples = 4
  c.tensorboard = True
  c.progress_bar = True
  return c


def sample_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.prompts = ("a red circle moving quickly to the left",
               "a small blue square bouncing up and down")
  c.seed = 0
  c.fps = 8  # of the written sample videos
  return c


def _positive_int(value, field: str) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{field} must be a positive integer, got {value!r}")


def _non_negative_int(value, field: str) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 0:
    raise ValueError(f"{field} must be an integer >= 0, got {value!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raise `ValueError` naming the first bad field of the training sections."""
  o = config.optim
  if not o.learning_rate > 0:
    raise ValueError(f"optim.learning_rate must be > 0, got {o.learning_rate!r}")
  _non_negative_int(o.warmup_steps, "optim.warmup_steps")
  _non_negative_int(o.decay_steps, "optim.decay_steps")
  _positive_int(o.num_steps, "optim.num_steps")
  _positive_int(o.get("grad_accum_steps", 1), "optim.grad_accum_steps")
  if not 0.0 <= o.end_lr_fraction <= 1.0:
    raise ValueError(f"optim.end_lr_fraction must be in [0, 1], got {o.end_lr_fraction!r}")
  if not isinstance(o.get("ema_warmup", True), bool):
    raise ValueError(f"optim.ema_warmup must be True or False, got {o.ema_warmup!r}")
  for field in ("b1", "b2", "ema_decay"):
    if not 0.0 <= o[field] < 1.0:
      raise ValueError(f"optim.{field} must be in [0, 1), got {o[field]!r}")
  if o.weight_decay < 0:
    raise ValueError(f"optim.weight_decay must be >= 0, got {o.weight_decay!r}")
  if o.grad_clip < 0:
    raise ValueError(f"optim.grad_clip must be >= 0 (0 = off), got {o.grad_clip!r}")
  check = config.mesh.get("param_sharding_check", "warn")
  if check not in PARAM_SHARDING_CHECKS:
    raise ValueError(f"mesh.param_sharding_check must be one of {PARAM_SHARDING_CHECKS}, got "
                     f"{check!r}")
  excess = config.mesh.get("max_param_excess", 0.1)
  if isinstance(excess, bool) or not isinstance(excess, (int, float)) or excess < 0:
    raise ValueError(f"mesh.max_param_excess must be a number >= 0, got {excess!r}")
  _positive_int(config.ckpt.every_steps, "ckpt.every_steps")
  _positive_int(config.ckpt.keep_last, "ckpt.keep_last")
  _non_negative_int(config.ckpt.keep_every, "ckpt.keep_every")
  _non_negative_int(config.ckpt.get("replica_parallel_min_bytes", 0),
                    "ckpt.replica_parallel_min_bytes")
  _positive_int(config.log.every_steps, "log.every_steps")
  _non_negative_int(config.log.sample_every_steps, "log.sample_every_steps")
  _non_negative_int(config.log.num_samples, "log.num_samples")
  if config.log.num_samples and not config.sample.prompts:
    raise ValueError("sample.prompts is empty but log.num_samples > 0")
  _positive_int(config.sample.fps, "sample.fps")
  for name in config.stage.keys():
    s = config.stage[name]
    _non_negative_int(s.num_steps, f"stage.{name}.num_steps")
    _non_negative_int(s.global_batch_size, f"stage.{name}.global_batch_size")
    if s.learning_rate < 0:
      raise ValueError(f"stage.{name}.learning_rate must be >= 0 (0 = optim.learning_rate), "
                       f"got {s.learning_rate!r}")
