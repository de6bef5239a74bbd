"""diffusers UNet2DConditionModel import: parity with diffusers, inflation, workdir, errors.

Tiny random SD-style and DeepFloyd-IF-style U-Nets are built offline and saved as
safetensors; our converted T2I U-Net must reproduce diffusers' outputs on the same noise,
timesteps, text states and text mask, and so must the STUNet inflated from it (temporal
factors 1) on a video, frame by frame.
"""

import dataclasses
import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

from absl.testing import flagsaver  # noqa: E402

from stunet.convert import diffusers_unet  # noqa: E402
from stunet.convert import imported_checkpoint  # noqa: E402
from stunet.convert import safetensors_io  # noqa: E402
from stunet.nn import inflate as inflate_lib  # noqa: E402
from stunet.nn.config import UNetConfig  # noqa: E402
from stunet.nn.stunet import STUNet  # noqa: E402
from stunet.nn.t2i_unet import T2IUNet  # noqa: E402

ATOL = 1e-4
SIZE, TEXT_LEN = 16, 7

SD_KWARGS = dict(
    sample_size=SIZE, in_channels=4, out_channels=4, block_out_channels=(32, 64),
    layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8,
    cross_attention_dim=16, attention_head_dim=4)
# Exercises the other SD-style options: linear projections, 2 transformer layers per block,
# per-level heads, uneven res blocks per level, scale/shift time conditioning, upcasting,
# sin-first features with a frequency shift.
SD_VARIANT_KWARGS = dict(
    SD_KWARGS, down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=(2, 1),
    use_linear_projection=True, transformer_layers_per_block=2, attention_head_dim=(2, 4),
    resnet_time_scale_shift="scale_shift", upcast_attention=True, flip_sin_to_cos=False,
    freq_shift=1)
# DeepFloyd IF stage I: pixel space, T5 width 16 projected to 32, GELU, pooled text added to
# the time embedding, attention over pixels + text K/V with a GroupNorm on the text.
IF_KWARGS = dict(
    sample_size=SIZE, in_channels=3, out_channels=6, block_out_channels=(32, 64),
    layers_per_block=1, down_block_types=("ResnetDownsampleBlock2D",
                                          "SimpleCrossAttnDownBlock2D"),
    up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
    mid_block_type="UNetMidBlock2DSimpleCrossAttn", norm_num_groups=8, cross_attention_dim=32,
    encoder_hid_dim=16, attention_head_dim=8, addition_embed_type="text",
    addition_embed_type_num_heads=2, resnet_time_scale_shift="scale_shift",
    resnet_skip_time_act=True, act_fn="gelu", time_embedding_act_fn="gelu",
    cross_attention_norm="group_norm")
TEXT_DIMS = {"sd": 16, "sd_variant": 16, "if": 16}
KWARGS = {"sd": SD_KWARGS, "sd_variant": SD_VARIANT_KWARGS, "if": IF_KWARGS}


def _perturb_norms(model):
  """Random GroupNorm/LayerNorm affine params, so a wrong norm mapping cannot pass."""
  gen = torch.Generator().manual_seed(3)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
        module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=gen))
        module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=gen))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """name -> (torch model, saved directory)."""
  out = {}
  for seed, (name, kwargs) in enumerate(KWARGS.items()):
    torch.manual_seed(seed)
    model = diffusers.UNet2DConditionModel(**kwargs).eval()
    _perturb_norms(model)
    directory = str(tmp_path_factory.mktemp(name))
    model.save_pretrained(directory, safe_serialization=True)
    out[name] = (model, directory)
  return out


@pytest.fixture(scope="module")
def converted(models):
  """name -> (UNetConfig, params)."""
  out = {}
  for name, (_, directory) in models.items():
    values, params = diffusers_unet.load_diffusers_unet(directory)
    out[name] = (UNetConfig.from_config(values), params)
  return out


@pytest.fixture(scope="module")
def t2i_apply(converted):
  """name -> jitted `(x b h w c, t, text, mask) -> prediction` of the converted model."""
  out = {}
  for name, (cfg, params) in converted.items():
    apply = jax.jit(T2IUNet(cfg).apply)
    out[name] = (lambda p, f: lambda *args: np.asarray(f({"params": p}, *args)))(params, apply)
  return out


def inputs(name, batch=2, in_channels=None):
  """Noise `b c h w`, timesteps, text states and a mask with padding in example 0."""
  rng = np.random.default_rng(7)
  in_channels = in_channels or KWARGS[name]["in_channels"]
  x = rng.standard_normal((batch, in_channels, SIZE, SIZE)).astype(np.float32)
  t = rng.uniform(0, 999, size=(batch,)).astype(np.float32)
  text = rng.standard_normal((batch, TEXT_LEN, TEXT_DIMS[name])).astype(np.float32)
  mask = np.ones((batch, TEXT_LEN), bool)
  mask[0, 4:] = False
  return x, t, text, mask


def reference(model, x, t, text, mask):
  with torch.no_grad():
    return model(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(text),
                 encoder_attention_mask=torch.from_numpy(mask)).sample.numpy()


@pytest.mark.parametrize("name", ["sd", "sd_variant", "if"])
def test_converted_unet_matches_diffusers(name, models, t2i_apply):
  x, t, text, mask = inputs(name)
  ours = t2i_apply[name](x.transpose(0, 2, 3, 1), t, text, mask)
  ref = reference(models[name][0], x, t, text, mask)
  assert np.abs(ref).max() > 0.1  # a meaningful signal, not a zero output
  np.testing.assert_allclose(ours.transpose(0, 3, 1, 2), ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["sd", "if"])
def test_text_mask_hides_padded_tokens(name, models, t2i_apply):
  """Padded tokens must not matter to the attention (IF: they do reach the text pooling and
  the text GroupNorm, as in diffusers), and real tokens must."""
  x, t, text, mask = inputs(name)
  x = x.transpose(0, 2, 3, 1)
  base = t2i_apply[name](x, t, text, mask)
  padded = text.copy()
  padded[0, 4:] += 5.0
  changed = t2i_apply[name](x, t, padded, mask)
  if name == "sd":
    np.testing.assert_allclose(changed, base, atol=1e-6, rtol=0)
  else:
    ref = reference(models[name][0], x.transpose(0, 3, 1, 2), t, padded, mask)
    np.testing.assert_allclose(changed.transpose(0, 3, 1, 2), ref, atol=ATOL, rtol=0)
  real = text.copy()
  real[0, :4] += 1.0
  assert np.abs(t2i_apply[name](x, t, real, mask)[0] - base[0]).max() > 1e-3


# Compiling a STUNet init dominates this file's time; the SD-style wiring is also covered by
# tests/nn (STUNet == T2I U-Net per frame), so the SD case is marked slow (CI runs it).
@pytest.mark.parametrize("name", ["if", pytest.param("sd", marks=pytest.mark.slow)])
def test_inflated_stunet_matches_diffusers_per_frame(name, models, converted):
  model, _ = models[name]
  cfg, t2i_params = converted[name]
  video_cfg = dataclasses.replace(cfg, temporal_factors=(1,), temporal_attention_heads=4)
  video_cfg.validate()
  frames, batch = 3, 2
  x, t, text, mask = inputs(name, batch=batch * frames)
  t, text, mask = t[:batch], text[:batch], mask[:batch]
  video = x.transpose(0, 2, 3, 1).reshape(batch, frames, SIZE, SIZE, -1)
  stunet = STUNet(video_cfg)
  fresh = jax.jit(stunet.init)(jax.random.key(0), video, t, text, mask)["params"]
  params = inflate_lib.inflate(t2i_params, fresh)
  ours = np.asarray(jax.jit(stunet.apply)({"params": params}, video, t, text, mask))
  # diffusers on every frame, each with its example's timestep, text and mask.
  rep = lambda a: np.repeat(a, frames, axis=0)
  ref = reference(model, x, rep(t), rep(text), rep(mask))
  ours = ours.reshape(batch * frames, SIZE, SIZE, -1).transpose(0, 3, 1, 2)
  np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)


def test_config_values(converted):
  cfg, _ = converted["if"]
  assert (cfg.spatial_attention, cfg.resample, cfg.activation) == ("added_kv", "resnet", "gelu")
  assert cfg.text_proj_dim == 32 and cfg.text_pooling == "attention"
  assert cfg.num_heads == (4, 8) and cfg.mid_num_heads == 8  # channels // attention_head_dim
  cfg, _ = converted["sd_variant"]
  assert cfg.num_heads == (2, 4) and cfg.num_res_blocks == (2, 1)  # SD: heads, not dims
  assert cfg.transformer_projection == "linear" and cfg.transformer_depth == 2


def test_entry_point_writes_a_restorable_workdir(models, converted, tmp_path):
  from experiments import convert  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "t2i")
  with flagsaver.flagsaver(**{"from": "diffusers", "src": models["if"][1], "out": out}):
    convert.main(["convert"])
  config = imported_checkpoint.load_config(out)
  cfg = UNetConfig.from_config(config["model"])
  assert cfg == converted["if"][0] and config["text_width"] == 16
  target = diffusers_unet.abstract_params(cfg, config["text_width"])
  restored = imported_checkpoint.load_params(out, target)
  expected = converted["if"][1]
  assert jax.tree.structure(restored) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(FileExistsError, match="already exists"):
    imported_checkpoint.save(out, config, expected)


# ---- errors -----------------------------------------------------------------------------------

def copy_with(src, dst, edit_tensors=None, edit_config=None):
  shutil.copytree(src, dst)
  if edit_tensors:
    path = os.path.join(dst, diffusers_unet.WEIGHTS_NAME)
    tensors = safetensors_numpy.load_file(path)
    edit_tensors(tensors)
    safetensors_numpy.save_file(tensors, path)
  if edit_config:
    path = os.path.join(dst, "config.json")
    with open(path) as f:
      config = json.load(f)
    edit_config(config)
    with open(path, "w") as f:
      json.dump(config, f)
  return str(dst)


def test_unknown_block_type_is_named(models, tmp_path):
  def edit(config):
    config["down_block_types"][1] = "AttnDownBlock2D"
  directory = copy_with(models["sd"][1], tmp_path / "m", edit_config=edit)
  with pytest.raises(ValueError, match="down_block_types.*'AttnDownBlock2D'"):
    diffusers_unet.load_diffusers_unet(directory)


def test_mixed_families_and_mismatched_levels_are_named(models):
  config = json.load(open(os.path.join(models["sd"][1], "config.json")))
  with pytest.raises(ValueError, match="up_block_types.*'ResnetUpsampleBlock2D'"):
    diffusers_unet.model_config_from_diffusers(
        {**config, "up_block_types": ["ResnetUpsampleBlock2D", "CrossAttnUpBlock2D"]})
  with pytest.raises(ValueError, match="level 1 has down block 'DownBlock2D' but up block "
                     "'CrossAttnUpBlock2D'"):
    diffusers_unet.model_config_from_diffusers(
        {**config, "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]})
  with pytest.raises(ValueError, match="mid_block_type=None"):
    diffusers_unet.model_config_from_diffusers({**config, "mid_block_type": None})


def test_missing_tensor_is_named(models, tmp_path):
  name = "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"
  directory = copy_with(models["sd"][1], tmp_path / "m", edit_tensors=lambda t: t.pop(name))
  with pytest.raises(safetensors_io.MissingTensorError, match=name.replace(".", r"\.")):
    diffusers_unet.load_diffusers_unet(directory)


def test_extra_tensor_is_reported(models, tmp_path):
  def edit(tensors):
    tensors["mid_block.attentions.0.extra_proj.weight"] = np.zeros((4, 4), np.float32)
  directory = copy_with(models["if"][1], tmp_path / "m", edit_tensors=edit)
  with pytest.raises(safetensors_io.UnexpectedTensorError, match="extra_proj"):
    diffusers_unet.load_diffusers_unet(directory)


def test_config_that_does_not_describe_the_file_names_the_tensor(models, tmp_path):
  def edit(config):
    config["use_linear_projection"] = True
  directory = copy_with(models["sd"][1], tmp_path / "m", edit_config=edit)
  with pytest.raises(safetensors_io.CheckpointError, match=r"proj_in\.weight.*\[32, 32, 1, 1\]"):
    diffusers_unet.load_diffusers_unet(directory)


@pytest.mark.parametrize("key, value", [
    ("class_embed_type", "timestep"),
    ("addition_embed_type", "text_time"),
    ("time_cond_proj_dim", 8),
    ("conv_in_kernel", 1),
    ("dual_cross_attention", True),
    ("only_cross_attention", True),
    ("attention_type", "gated"),
    ("act_fn", "mish"),
    ("encoder_hid_dim_type", "image_proj"),
    ("transformer_layers_per_block", [1, 2]),
    ("a_new_option", 1),
])
def test_unsupported_options_are_named(models, key, value):
  config = json.load(open(os.path.join(models["sd"][1], "config.json")))
  with pytest.raises(ValueError, match=key):
    diffusers_unet.model_config_from_diffusers({**config, key: value})


def test_missing_directory_contents(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    diffusers_unet.load_diffusers_unet(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
  with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
    diffusers_unet.load_diffusers_unet(str(tmp_path))
