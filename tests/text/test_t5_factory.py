"""`text.kind='t5'`: a local HF T5 directory becomes a frozen, cached text encoder end to end."""

import io
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

from stunet.text import config as text_config_lib  # noqa: E402
from stunet.text.factory import load_pretrained_text_variables  # noqa: E402
from stunet.text.factory import make_text_encoder  # noqa: E402
from stunet.text.frozen_encoder import FrozenTextEncoder  # noqa: E402
from tests.text.float_tolerance import encoder_reduction_length  # noqa: E402
from tests.text.float_tolerance import float32_atol  # noqa: E402

SENTENCES = ["a red circle moving quickly to the left", "a small blue square bouncing up and down",
             "a green triangle drifting slowly upwards", "two objects move to the right"]


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
  """A tiny random T5EncoderModel and a sentencepiece model trained here, in one directory."""
  directory = tmp_path_factory.mktemp("t5_with_tokenizer")
  model_file = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(SENTENCES * 10), model_writer=model_file, vocab_size=40,
      model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
      minloglevel=2)
  (directory / "spiece.model").write_bytes(model_file.getvalue())
  torch.manual_seed(0)
  config = transformers.T5Config(vocab_size=140, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                 num_heads=4, feed_forward_proj="gated-gelu")
  model = transformers.T5EncoderModel(config).eval()
  model.save_pretrained(str(directory), safe_serialization=True)
  return str(directory), model


def t5_text_config(directory, max_length=12):
  c = text_config_lib.text_config()
  c.kind, c.t5_dir, c.max_length = "t5", directory, max_length
  return c


def test_t5_kind_matches_transformers_end_to_end(t5_dir):
  directory, hf_model = t5_dir
  config = t5_text_config(directory)
  tokenizer, module = make_text_encoder(config)
  encoder = FrozenTextEncoder(tokenizer, module, load_pretrained_text_variables(config),
                              batch_size=4)
  assert encoder.width == 32
  emb, mask = encoder.encode(SENTENCES[:3])

  hf_tokenizer = transformers.T5Tokenizer.from_pretrained(directory)
  batch = hf_tokenizer(SENTENCES[:3], padding="max_length", truncation=True, max_length=12,
                       return_tensors="pt")
  with torch.no_grad():
    ref = hf_model(**batch).last_hidden_state.numpy()
  np.testing.assert_array_equal(mask, batch["attention_mask"].numpy().astype(bool))
  c = module.config
  atol = float32_atol(ref[mask], encoder_reduction_length(
      layers=c.num_layers, width=c.d_model, heads=c.num_heads, head_dim=c.d_kv, mlp=c.d_ff,
      length=12))
  np.testing.assert_allclose(emb[mask], ref[mask], atol=atol, rtol=0)


def test_bytes_kind_has_no_pretrained_weights():
  assert load_pretrained_text_variables(text_config_lib.text_config()) is None


def test_t5_kind_without_directory_names_the_field():
  with pytest.raises(ValueError, match="text.t5_dir"):
    make_text_encoder(t5_text_config(""))


def test_t5_dtype_bfloat16_holds_and_computes_in_bf16(t5_dir):
  directory, _ = t5_dir
  full_config = t5_text_config(directory)
  half_config = t5_text_config(directory)
  half_config.t5_dtype = "bfloat16"
  _, full_module = make_text_encoder(full_config)
  tokenizer, half_module = make_text_encoder(half_config)
  ids, mask = tokenizer(SENTENCES)
  values = load_pretrained_text_variables(full_config)
  full = np.asarray(full_module.apply(values, ids, mask))
  # Placed in the module's own parameter dtype, as the train state places them.
  abstract = jax.eval_shape(half_module.init, jax.random.key(0), ids, mask)
  assert {x.dtype for x in jax.tree.leaves(abstract)} == {jnp.dtype(jnp.bfloat16)}
  half_values = jax.tree.map(lambda v, a: jnp.asarray(v, a.dtype), values, nn.unbox(abstract))
  half = half_module.apply(half_values, ids, mask)
  assert half.dtype == jnp.bfloat16
  mask = np.asarray(mask)
  error = np.abs(np.asarray(half, np.float32) - full)[mask].max()
  assert error < 0.1 * np.abs(full[mask]).max(), error


def test_t5_dtype_rejects_other_values(t5_dir):
  config = t5_text_config(t5_dir[0])
  config.t5_dtype = "float16"
  with pytest.raises(ValueError, match="text.t5_dtype"):
    make_text_encoder(config)
