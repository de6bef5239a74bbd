"""Training from imported public weights: a frozen pre-trained T5, and the video stage
started from a converted diffusers U-Net (`config.stage.video.init_from` = imported workdir).

A tiny random SD-style `UNet2DConditionModel` whose cross-attention width is a tiny random
T5's `d_model` is converted with the library, the video stage trains two steps from it, and
the frozen parts must come out bitwise equal to what was imported.
"""

import dataclasses
import io
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import flax  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

from stunet.convert import diffusers_unet  # noqa: E402
from stunet.convert import imported_checkpoint  # noqa: E402
from stunet.data import global_batch  # noqa: E402
from stunet.diffusion import guidance  # noqa: E402
from stunet.nn.config import UNetConfig  # noqa: E402
from stunet.nn.t2i_unet import T2IUNet  # noqa: E402
from stunet.parallel import mesh as mesh_lib  # noqa: E402
from stunet.text.factory import load_pretrained_text_variables  # noqa: E402
from stunet.train import build as build_lib  # noqa: E402
from stunet.train import checkpoint as checkpoint_lib  # noqa: E402
from stunet.train import loop  # noqa: E402
from stunet.train import optimizer  # noqa: E402
from stunet.train import restore as restore_lib  # noqa: E402
from stunet.train import stages as stages_lib  # noqa: E402
from stunet.train import state as state_lib  # noqa: E402
from stunet.train import step as step_lib  # noqa: E402

from tests.train.conftest import fixed_batch  # noqa: E402
from tests.train.conftest import tiny_config  # noqa: E402

T5_WIDTH = 32
SENTENCES = ["a red circle moves left", "a blue square moves up", "a green triangle spins",
             "two circles bounce", "a yellow square falls", "a blue circle grows"]
# Pixel space like the shapes data (3 channels in and out); two levels as the two-level
# test model of tests/train/conftest.py, attention at the coarser one.
UNET_KWARGS = dict(
    sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 32),
    layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
    cross_attention_dim=T5_WIDTH, attention_head_dim=8)
TEMPORAL = dict(temporal_factors=(2,), temporal_attention_heads=2, temporal_attention_depth=1)


def _flat(tree):
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(jax.device_get(nn.unbox(tree))))


def _assert_bitwise(actual, expected):
  a, e = _flat(actual), _flat(expected)
  assert set(a) == set(e)
  for key, value in e.items():
    assert np.asarray(a[key]).tobytes() == np.asarray(value).tobytes(), key


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
  """A tiny random T5EncoderModel with a sentencepiece model trained here."""
  directory = tmp_path_factory.mktemp("t5")
  model_file = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(SENTENCES * 10), model_writer=model_file, vocab_size=30,
      model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
      minloglevel=2)
  (directory / "spiece.model").write_bytes(model_file.getvalue())
  torch.manual_seed(0)
  config = transformers.T5Config(vocab_size=140, d_model=T5_WIDTH, d_kv=8, d_ff=64,
                                 num_layers=1, num_heads=4, feed_forward_proj="gated-gelu")
  transformers.T5EncoderModel(config).eval().save_pretrained(str(directory),
                                                             safe_serialization=True)
  return str(directory)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
  """(imported workdir, its model values, its U-Net params) of a converted diffusers U-Net."""
  source = str(tmp_path_factory.mktemp("diffusers_unet"))
  torch.manual_seed(1)
  diffusers.UNet2DConditionModel(**UNET_KWARGS).eval().save_pretrained(
      source, safe_serialization=True)
  model, params = diffusers_unet.load_diffusers_unet(source)
  workdir = str(tmp_path_factory.mktemp("imported"))
  imported_checkpoint.save(workdir, {"model": model, "text_width": T5_WIDTH,
                                     "imported_from": {"format": "diffusers",
                                                       "source": source}}, params)
  return workdir, model, params


def t5_config(t5_dir, imported_model=None, two_levels=True):
  c = tiny_config(num_steps=2, mesh_shape=(1, 1, 1), two_levels=two_levels)
  if imported_model is not None:
    spatial = {k: tuple(v) if isinstance(v, list) else v for k, v in imported_model.items()
               if not k.startswith("temporal_")}
    c.model.update(spatial)
    c.model.update(TEMPORAL)
  c.text.update(dict(kind="t5", t5_dir=t5_dir, max_length=16))
  return c


def video_config(t5_dir, imported, data_dir):
  workdir, model, _ = imported
  c = t5_config(t5_dir, model)
  c.stages = "video"
  c.stage.video.init_from = workdir
  c.data.data_dir = data_dir
  c.data.global_batch_size = 2
  c.log.update(dict(num_samples=0, tensorboard=False, progress_bar=False))
  return c


def test_video_stage_starts_from_imported_unet_and_t5(t5_dir, imported, data_dir, tmp_path):
  _, _, imported_params = imported
  config = video_config(t5_dir, imported, data_dir)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  (result,) = loop.train(config, str(tmp_path / "run"), mesh=mesh)
  assert result.stage == "video" and result.step == 2
  # Guided (and trained on dropped captions) with the empty prompt, as the imported U-Net was.
  with open(tmp_path / "run" / "video" / "config.json") as f:
    assert json.load(f)["diffusion"]["null_text"] == "empty_caption"

  final = _flat(result.state.params["unet"])
  spatial = {k: v for k, v in final.items() if not any(p.startswith("temporal") for p in k)}
  # Every imported tensor sits, unchanged, at its position in the STUNet; nothing else is
  # spatial.
  _assert_bitwise(flax.traverse_util.unflatten_dict(spatial), imported_params)
  _assert_bitwise(result.state.ema_weights["text"],
                  load_pretrained_text_variables(config.text)["params"])
  _assert_bitwise(result.state.params["text"],
                  load_pretrained_text_variables(config.text)["params"])

  # The temporal layers trained: some differ from the fresh (seeded) inflation.
  setup = build_lib.build_stage(config, stages_lib.get_stage("video"))
  fresh = _flat(jax.eval_shape(setup.init_params, jax.random.key(config.seed))["unet"])
  temporal = [k for k in final if any(p.startswith("temporal") for p in k)]
  assert temporal and set(final) == set(fresh)
  start = loop.load_parent_params(config, stages_lib.get_stage("video"), "", mesh)
  started, _ = setup.create_state(mesh, jax.random.key(config.seed), start)
  start_flat = _flat(started.params["unet"])
  _assert_bitwise({k: start_flat[k] for k in spatial}, {k: final[k] for k in spatial})
  moved = [k for k in temporal if not np.array_equal(start_flat[k], final[k])]
  assert moved


def test_imported_start_needs_a_pretrained_text_encoder(t5_dir, imported, data_dir):
  config = video_config(t5_dir, imported, data_dir)
  config.text.kind = "bytes_transformer"
  config.text.width = T5_WIDTH
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  with pytest.raises(ValueError, match=r"imported U-Net.*text.kind='bytes_transformer' has no "
                                       r"pre-trained weights; set text.kind='t5' and "
                                       r"text.t5_dir"):
    loop.load_parent_params(config, stages_lib.get_stage("video"), "", mesh)


def test_imported_start_lists_mismatched_spatial_fields(t5_dir, imported, data_dir):
  config = video_config(t5_dir, imported, data_dir)
  config.model.norm_eps = 1e-3
  config.model.temporal_kernel = 5  # temporal fields are the video stage's own: not listed
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  with pytest.raises(ValueError) as error:
    loop.load_parent_params(config, stages_lib.get_stage("video"), "", mesh)
  message = str(error.value)
  assert "model.norm_eps: imported 1e-05, config 0.001" in message
  assert "temporal_kernel" not in message
  assert imported[0] in message


def test_imported_start_checks_the_text_width(t5_dir, imported, data_dir, tmp_path):
  workdir, model, params = imported
  other = str(tmp_path / "wider")
  imported_checkpoint.save(other, {"model": model, "text_width": 2 * T5_WIDTH,
                                   "imported_from": {"format": "diffusers", "source": "x"}},
                           params)
  config = video_config(t5_dir, imported, data_dir)
  config.stage.video.init_from = other
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  with pytest.raises(ValueError, match=rf"width {2 * T5_WIDTH} .*produces width {T5_WIDTH}"):
    loop.load_parent_params(config, stages_lib.get_stage("video"), "", mesh)


def test_t2i_step_leaves_the_pretrained_t5_unchanged(t5_dir):
  config = t5_config(t5_dir)
  setup = build_lib.build_stage(config, stages_lib.get_stage("t2i"))
  assert all(l == optimizer.FROZEN for l in jax.tree.leaves(setup.labels["text"]))
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  state, shardings = setup.create_state(mesh, jax.random.key(0))
  pretrained = load_pretrained_text_variables(config.text)["params"]
  _assert_bitwise(state.params["text"], pretrained)
  _assert_bitwise(state.ema_weights["text"], pretrained)
  assert not jax.tree.leaves(state.ema_params["text"])  # held once, in params
  # Frozen text: Adam holds two moments per trainable leaf, and those are U-Net leaves only.
  n_train = sum(l == optimizer.TRAIN for l in jax.tree.leaves(setup.labels))
  assert len([x for x in jax.tree.leaves(state.opt_state) if np.ndim(x) > 0]) == 2 * n_train

  batch_sharding = global_batch.batch_sharding(mesh, config.data.batch_axes)
  keys = ("image", "text_ids", "text_mask")
  train_step = step_lib.jit_step(setup.step_fn(), shardings, {k: batch_sharding for k in keys},
                                 mesh)
  batch = fixed_batch(setup.tokenizer, "image", setup.example_shape)
  batch = {k: jax.device_put(v, batch_sharding) for k, v in batch.items()}
  before_unet = _flat(state.params["unet"])
  state, metrics = train_step(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  _assert_bitwise(state.params["text"], pretrained)
  _assert_bitwise(state.ema_weights["text"], pretrained)
  after_unet = _flat(state.params["unet"])
  assert any(not np.array_equal(before_unet[k], after_unet[k]) for k in before_unet)


def test_checkpoints_leave_out_the_pretrained_t5_and_restore_it_from_its_files(t5_dir,
                                                                               tmp_path):
  """The frozen T5 is neither in the EMA nor in checkpoints: a restore reads it from
  `text.t5_dir` and the state comes back bitwise."""
  config = t5_config(t5_dir)
  setup = build_lib.build_stage(config, stages_lib.get_stage("t2i"))
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  state, _ = setup.create_state(mesh, jax.random.key(0))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ckpt"), config.ckpt)
  ckpt.save(1, setup.saved_state(state), None,
            {"step": 1, "state_format": state_lib.STATE_FORMAT})
  ckpt.wait()
  saved = ckpt._manager.item_metadata(1)["state"]  # pylint: disable=protected-access
  assert not jax.tree.leaves(saved["params"]["text"]) and not jax.tree.leaves(
      saved["ema_params"]["text"])
  n_text = len(jax.tree.leaves(state.params["text"]))
  assert len(jax.tree.leaves(saved)) == len(jax.tree.leaves(state)) - n_text > 0
  restored = restore_lib.restore_state(ckpt, 1, setup, mesh)
  ckpt.close()
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(jax.device_get(restored)),
                  jax.tree.leaves(jax.device_get(state))):
    assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_spatial_differences_ignore_temporal_and_compute_only_fields(imported):
  _, model, _ = imported
  ours = dataclasses.replace(UNetConfig.from_config(dict(model)), temporal_kernel=5,
                             dtype="bfloat16", remat=True, channels=8)
  assert loop.spatial_differences(model, dataclasses.asdict(ours)) == {
      "channels": (16, 8)}


def test_guidance_with_the_empty_caption_matches_diffusers(t5_dir, imported):
  """An imported U-Net guided as its diffusers pipeline guides it: the unconditional half sees
  the T5 embedding of the empty prompt (transformers' tokenizer and encoder), not zeros."""
  workdir, model, params = imported
  config = t5_config(t5_dir, model)
  config.diffusion.null_text = "empty_caption"
  setup = build_lib.build_stage(config, stages_lib.get_stage("t2i"))
  text_params = load_pretrained_text_variables(config.text)["params"]
  prompt, w = "a red circle", 4.0
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, 16, 16, 3)).astype(np.float32)
  t = np.array([321.0], np.float32)

  ids, mask = setup.tokenizer([prompt])
  emb = setup.text_module.apply({"params": text_params}, ids, mask).astype(np.float32)
  unet = T2IUNet(UNetConfig.from_config(dict(model)))

  def denoise(x_t, noise_cond, text_emb, text_mask):
    return unet.apply({"params": params}, x_t, noise_cond, text_emb, text_mask)

  def ours(null_emb, null_mask):
    return np.asarray(jax.jit(lambda *a: guidance.guided_prediction(denoise, *a, w))(
        x, t, emb, mask, null_emb, null_mask))

  tokenizer = transformers.T5Tokenizer.from_pretrained(t5_dir)
  encoder = transformers.T5EncoderModel.from_pretrained(t5_dir).eval()
  reference_unet = diffusers.UNet2DConditionModel.from_pretrained(
      json.load(open(os.path.join(workdir, imported_checkpoint.CONFIG_NAME)))[
          "imported_from"]["source"]).eval()

  def diffusers_eps(text):
    tokens = tokenizer([text], padding="max_length", truncation=True,
                       max_length=config.text.max_length,
                       return_tensors="pt")
    with torch.no_grad():
      states = encoder(tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
      return reference_unet(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(t),
                            states, encoder_attention_mask=tokens.attention_mask).sample.numpy()

  cond, uncond = diffusers_eps(prompt), diffusers_eps("")
  reference = (uncond + w * (cond - uncond)).transpose(0, 2, 3, 1)
  got = ours(*setup.null_text(text_params, emb))
  np.testing.assert_allclose(got, reference, atol=2e-4, rtol=0)
  # The zero null text is another input: it would guide the imported U-Net elsewhere.
  zeros = ours(*guidance.null_text(emb.shape[1], emb.shape[2]))
  assert np.abs(zeros - reference).max() > 100 * 2e-4
