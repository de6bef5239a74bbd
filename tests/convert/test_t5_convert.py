"""HF T5 checkpoint import: full/sharded/bf16 checkpoints, and named errors for bad files."""

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

from stunet.convert import safetensors_io  # noqa: E402
from stunet.convert.t5 import load_t5_encoder  # noqa: E402
from stunet.convert.t5 import load_t5_encoder_with_report  # noqa: E402
from stunet.convert.t5 import t5_config_from_hf  # noqa: E402
from stunet.text.t5 import T5Encoder  # noqa: E402

VOCAB = 50


def tiny_config(feed_forward_proj="gated-gelu"):
  return transformers.T5Config(vocab_size=VOCAB, d_model=16, d_kv=4, d_ff=24, num_layers=2,
                               num_heads=4, feed_forward_proj=feed_forward_proj,
                               relative_attention_num_buckets=8,
                               relative_attention_max_distance=16)


def batch():
  rng = np.random.default_rng(1)
  ids = rng.integers(0, VOCAB, size=(2, 9)).astype(np.int32)
  mask = np.ones((2, 9), dtype=bool)
  mask[0, 5:] = False
  return ids, mask


def assert_matches(encoder_model, directory, atol=1e-5):
  ids, mask = batch()
  config, variables = load_t5_encoder(directory)
  ours = np.asarray(jax.jit(T5Encoder(config).apply)(variables, ids, mask))
  with torch.no_grad():
    ref = encoder_model(input_ids=torch.from_numpy(ids.astype(np.int64)),
                        attention_mask=torch.from_numpy(mask.astype(np.int64)))
  np.testing.assert_allclose(ours, ref.last_hidden_state.float().numpy(), atol=atol, rtol=0)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
  torch.manual_seed(0)
  directory = str(tmp_path_factory.mktemp("t5_encoder"))
  model = transformers.T5EncoderModel(tiny_config()).eval()
  model.save_pretrained(directory, safe_serialization=True)
  return directory


def copy_with(src, dst, edit_tensors=None, edit_config=None):
  """Copies a model directory, editing its tensor dict and/or config dict."""
  shutil.copytree(src, dst)
  if edit_tensors:
    path = os.path.join(dst, "model.safetensors")
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


def test_full_encoder_decoder_checkpoint_reports_decoder(tmp_path):
  torch.manual_seed(1)
  full = transformers.T5ForConditionalGeneration(tiny_config("relu")).eval()
  full.save_pretrained(str(tmp_path), safe_serialization=True)
  _, _, ignored = load_t5_encoder_with_report(str(tmp_path))
  n_decoder = sum(1 for n in safetensors_numpy.load_file(
      str(tmp_path / "model.safetensors")) if n.startswith("decoder."))
  assert n_decoder > 0
  assert [(g.prefix, g.count) for g in ignored] == [("decoder.", n_decoder)]
  assert "decoder" in ignored[0].reason
  assert_matches(full.get_encoder(), str(tmp_path))


def test_untied_embedding_and_lm_head_are_handled(encoder_dir, tmp_path):
  def add(tensors):
    tensors["encoder.embed_tokens.weight"] = tensors["shared.weight"].copy()
    tensors["lm_head.weight"] = np.ones((VOCAB, 16), np.float32)
  directory = copy_with(encoder_dir, tmp_path / "m", edit_tensors=add)
  _, _, ignored = load_t5_encoder_with_report(directory)
  assert [(g.prefix, g.count) for g in ignored] == [("lm_head.", 1)]

  def diverge(tensors):
    tensors["encoder.embed_tokens.weight"] = tensors["shared.weight"] + 1
  directory = copy_with(encoder_dir, tmp_path / "d", edit_tensors=diverge)
  with pytest.raises(safetensors_io.CheckpointError, match="differ, but T5 ties them"):
    load_t5_encoder(directory)


def test_only_encoder_embed_tokens_is_enough(encoder_dir, tmp_path):
  def rename(tensors):
    tensors["encoder.embed_tokens.weight"] = tensors.pop("shared.weight")
  directory = copy_with(encoder_dir, tmp_path / "m", edit_tensors=rename)
  model = transformers.T5EncoderModel.from_pretrained(encoder_dir).eval()
  assert_matches(model, directory)


def test_sharded_checkpoint(tmp_path):
  torch.manual_seed(2)
  model = transformers.T5EncoderModel(tiny_config()).eval()
  model.save_pretrained(str(tmp_path), safe_serialization=True, max_shard_size="8KB")
  assert os.path.exists(tmp_path / "model.safetensors.index.json")
  assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
  assert_matches(model, str(tmp_path))


def test_bfloat16_checkpoint(tmp_path):
  torch.manual_seed(3)
  model = transformers.T5EncoderModel(tiny_config()).eval().to(torch.bfloat16)
  model.save_pretrained(str(tmp_path), safe_serialization=True)
  header = safetensors_io.read_safetensors_header(str(tmp_path / "model.safetensors"))
  assert {str(info.dtype) for info in header.values()} == {"bfloat16"}
  _, variables = load_t5_encoder(str(tmp_path))
  assert jax.tree.leaves(variables)[0].dtype == np.float32
  # bf16 -> f32 is exact, so the float32 reference is the same network.
  assert_matches(model.float(), str(tmp_path))


def test_missing_tensor_is_named(encoder_dir, tmp_path):
  name = "encoder.block.1.layer.1.DenseReluDense.wi_1.weight"
  directory = copy_with(encoder_dir, tmp_path / "m", edit_tensors=lambda t: t.pop(name))
  with pytest.raises(safetensors_io.MissingTensorError, match=name.replace(".", r"\.")):
    load_t5_encoder(directory)


def test_unexpected_tensor_is_named(encoder_dir, tmp_path):
  def add(tensors):
    tensors["encoder.block.0.layer.0.SelfAttention.extra.weight"] = np.zeros(3, np.float32)
  directory = copy_with(encoder_dir, tmp_path / "m", edit_tensors=add)
  with pytest.raises(safetensors_io.UnexpectedTensorError,
                     match=r"1 tensor.*SelfAttention\.extra\.weight"):
    load_t5_encoder(directory)


def test_relu_checkpoint_with_gated_config_is_caught(encoder_dir, tmp_path):
  # The file holds wi_0/wi_1; a config claiming ReLU expects `wi` and must say so.
  def to_relu(config):
    config.update(feed_forward_proj="relu", dense_act_fn="relu", is_gated_act=False)
  directory = copy_with(encoder_dir, tmp_path / "m", edit_config=to_relu)
  with pytest.raises(safetensors_io.MissingTensorError, match=r"DenseReluDense\.wi\.weight"):
    load_t5_encoder(directory)


def test_wrong_shape_is_named(encoder_dir, tmp_path):
  directory = copy_with(encoder_dir, tmp_path / "m",
                        edit_config=lambda c: c.update(d_ff=32))
  with pytest.raises(safetensors_io.CheckpointError, match=r"wi_0\.weight.*expected \[32, 16\]"):
    load_t5_encoder(directory)


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.update(model_type="umt5"), "model_type='umt5' is not supported"),
    (lambda c: c.update(architectures=["T5ForTokenClassification"]),
     "T5ForTokenClassification"),
    (lambda c: c.update(is_decoder=True), "is_decoder=true"),
    (lambda c: c.update(position_embedding_type="rope"), r"\['position_embedding_type'\]"),
    (lambda c: c.pop("d_kv"), r"\['d_kv'\] are missing"),
    (lambda c: c.update(feed_forward_proj="gated-tanh", dense_act_fn="tanh"),
     "activation 'tanh'"),
    (lambda c: c.update(feed_forward_proj="a-b-c"), "'ACT' or 'gated-ACT'"),
    (lambda c: c.update(dense_act_fn="relu"), "dense_act_fn='relu' contradicts"),
])
def test_config_errors_name_the_option(encoder_dir, edit, message):
  with open(os.path.join(encoder_dir, "config.json")) as f:
    config = json.load(f)
  edit(config)
  with pytest.raises(ValueError, match=message):
    t5_config_from_hf(config)


def test_unknown_config_key_can_be_accepted_explicitly(encoder_dir):
  with open(os.path.join(encoder_dir, "config.json")) as f:
    config = json.load(f)
  config["my_note"] = "fine"
  assert t5_config_from_hf(config, extra_ignored_keys=["my_note"]).d_model == 16


def test_directory_without_weights(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  (tmp_path / "pytorch_model.bin").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match=r"No model\.safetensors.*pytorch_model\.bin"):
    safetensors_io.CheckpointTensors.from_directory(str(tmp_path))


def test_reader_matches_safetensors_and_tracks_consumption(tmp_path):
  path = str(tmp_path / "x.safetensors")
  arrays = {"a": np.arange(6, dtype=np.float16).reshape(2, 3),
            "b.c": np.arange(4, dtype=np.int64), "b.d": np.ones((1, 2, 2), np.float32)}
  safetensors_numpy.save_file(arrays, path, metadata={"format": "np"})
  tensors = safetensors_io.CheckpointTensors([path])
  assert tensors.names() == ["a", "b.c", "b.d"]
  np.testing.assert_array_equal(tensors.take("a"), arrays["a"])
  assert tensors.take("a").dtype == np.float16
  with pytest.raises(safetensors_io.UnexpectedTensorError, match="2 tensor.*'b.c', 'b.d'"):
    tensors.check_all_consumed()
  assert tensors.ignore("b.", "test") == 2
  tensors.check_all_consumed()
  with pytest.raises(safetensors_io.MissingTensorError, match="'zz' is missing"):
    tensors.take("zz")
  with pytest.raises(safetensors_io.CheckpointError, match=r"expected \[3, 2\]"):
    tensors.take("a", (3, 2))


def test_reader_rejects_corrupt_file(tmp_path):
  path = tmp_path / "bad.safetensors"
  path.write_bytes(b"\xff" * 64)
  with pytest.raises(safetensors_io.CheckpointError, match="header length"):
    safetensors_io.read_safetensors_header(str(path))
  header = b'{"w": {"dtype": "F32", "shape": [2]}}'
  path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
  with pytest.raises(safetensors_io.CheckpointError, match="'w' lacks dtype/shape/data_offsets"):
    safetensors_io.read_safetensors_header(str(path))
  header = b'{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}'
  path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
  with pytest.raises(safetensors_io.CheckpointError, match="does not match its shape"):
    safetensors_io.read_safetensors_header(str(path))
