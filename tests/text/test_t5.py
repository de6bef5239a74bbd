"""T5 encoder and sentencepiece tokenizer against HF transformers on tiny random models."""

import io
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

from stunet.convert.t5 import load_t5_encoder  # noqa: E402
from stunet.text import interface  # noqa: E402
from stunet.text.sentencepiece_tokenizer import SentencePieceTokenizer  # noqa: E402
from stunet.text.t5 import T5Config  # noqa: E402
from stunet.text.t5 import T5Encoder  # noqa: E402
from stunet.text.t5 import relative_position_buckets  # noqa: E402
from tests.text.float_tolerance import encoder_reduction_length  # noqa: E402
from tests.text.float_tolerance import float32_atol  # noqa: E402

VOCAB = 99
LENGTH = 12


def save_tiny_t5(directory, feed_forward_proj, seed=0, **overrides):
  """A random HF T5EncoderModel saved as config.json + model.safetensors; returns the model."""
  torch.manual_seed(seed)
  config = transformers.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                 num_heads=4, feed_forward_proj=feed_forward_proj,
                                 relative_attention_num_buckets=8,
                                 relative_attention_max_distance=16, **overrides)
  model = transformers.T5EncoderModel(config).eval()
  model.save_pretrained(directory, safe_serialization=True)
  return model


def t5_atol(config, reference):
  """float32 tolerance of a T5 encoder's hidden states (tests/text/float_tolerance.py)."""
  return float32_atol(reference, encoder_reduction_length(
      layers=config.num_layers, width=config.d_model, heads=config.num_heads,
      head_dim=config.d_kv, mlp=config.d_ff, length=LENGTH))


def random_batch(seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, VOCAB, size=(3, LENGTH)).astype(np.int32)
  mask = np.ones((3, LENGTH), dtype=bool)
  mask[1, 7:] = False  # right padding
  mask[2, :3] = False  # left padding: T5's relative positions allow it
  return ids, mask


def hf_hidden(model, ids, mask):
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(ids.astype(np.int64)),
                attention_mask=torch.from_numpy(mask.astype(np.int64)))
  return out.last_hidden_state.numpy()


@pytest.fixture(scope="module", params=["relu", "gated-gelu", "gated-silu", "gelu"])
def converted(request, tmp_path_factory):
  directory = str(tmp_path_factory.mktemp(f"t5_{request.param}"))
  model = save_tiny_t5(directory, request.param)
  config, variables = load_t5_encoder(directory)
  return request.param, model, config, variables


def test_config_is_read_from_checkpoint(converted):
  proj, _, config, _ = converted
  assert (config.d_model, config.d_kv, config.d_ff, config.num_layers, config.num_heads) == (
      32, 8, 64, 2, 4)
  assert config.relative_attention_num_buckets == 8
  assert config.is_gated_act == proj.startswith("gated")
  assert config.dense_act_fn == {"relu": "relu", "gated-gelu": "gelu_new",
                                 "gated-silu": "silu", "gelu": "gelu"}[proj]


def test_hidden_states_match_transformers(converted):
  _, model, config, variables = converted
  ids, mask = random_batch()
  ours = jax.jit(T5Encoder(config).apply)(variables, ids, mask)
  ref = hf_hidden(model, ids, mask)
  assert ours.shape == (3, LENGTH, 32) and ours.dtype == jnp.float32
  # XLA and PyTorch reduce in different orders: they agree to rounding, not bit for bit.
  np.testing.assert_allclose(np.asarray(ours), ref, atol=t5_atol(config, ref), rtol=0)
  # Padded keys must not influence real tokens: changing padded ids leaves them unchanged.
  ids2 = ids.copy()
  ids2[~mask] = (ids2[~mask] + 1) % VOCAB
  ours2 = T5Encoder(config).apply(variables, ids2, mask)
  # Another batch can tile (and so round) differently: equal to rounding, not bit for bit.
  np.testing.assert_allclose(np.asarray(ours2)[mask], np.asarray(ours)[mask],
                             atol=t5_atol(config, ours), rtol=0)


def test_params_match_fresh_init_tree(converted):
  _, _, config, variables = converted
  ids, mask = random_batch()
  fresh = T5Encoder(config).init(jax.random.key(0), ids, mask)
  shapes = lambda tree: jax.tree.map(lambda x: x.shape, nn.meta.unbox(tree))
  assert shapes(fresh) == shapes(variables)


def test_every_param_has_logical_axes(converted):
  _, _, config, _ = converted
  ids, mask = random_batch()
  boxed = jax.eval_shape(T5Encoder(config).init, jax.random.key(0), ids, mask)
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert leaves and all(isinstance(x, nn.Partitioned) for x in leaves)
  names = nn.get_partition_spec(boxed)["params"]
  assert names["token_embedding"]["embedding"] == jax.sharding.PartitionSpec("vocab", "embed")
  assert names["layers_0"]["attention"]["q"]["kernel"] == jax.sharding.PartitionSpec(
      "embed", "heads")
  assert names["layers_1"]["mlp"]["wo"]["kernel"] == jax.sharding.PartitionSpec("mlp", "embed")


def test_bfloat16_compute_stays_close(converted):
  _, _, config, variables = converted
  ids, mask = random_batch()
  full = np.asarray(T5Encoder(config).apply(variables, ids, mask))
  half = T5Encoder(config, dtype=jnp.bfloat16).apply(variables, ids, mask)
  assert half.dtype == jnp.bfloat16
  error = np.abs(np.asarray(half, np.float32) - full)[mask].max()
  assert error < 0.1 * np.abs(full).max(), error


def test_dropout_only_when_not_deterministic(converted):
  _, _, config, variables = converted
  ids, mask = random_batch()
  model = T5Encoder(config)
  a = model.apply(variables, ids, mask, deterministic=False, rngs={"dropout": jax.random.key(1)})
  b = model.apply(variables, ids, mask, deterministic=False, rngs={"dropout": jax.random.key(2)})
  c = model.apply(variables, ids, mask)
  assert not np.allclose(a, b) and not np.allclose(a, c)
  np.testing.assert_array_equal(c, model.apply(variables, ids, mask))


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 16), (16, 64)])
def test_relative_position_buckets_match_transformers(num_buckets, max_distance):
  length = 300  # covers the exact, logarithmic and clipped ranges and the 16/32/64 boundaries
  ours = relative_position_buckets(length, length, num_buckets, max_distance)
  positions = torch.arange(length)
  ref = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
      positions[None, :] - positions[:, None], bidirectional=True, num_buckets=num_buckets,
      max_distance=max_distance)
  np.testing.assert_array_equal(ours, ref.numpy())


def test_encoder_rejects_mismatched_mask(converted):
  _, _, config, variables = converted
  ids, mask = random_batch()
  with pytest.raises(ValueError, match="mask of the same shape"):
    T5Encoder(config).apply(variables, ids, mask[:, :5])


def test_config_rejects_bad_values():
  with pytest.raises(ValueError, match="T5Config.num_heads"):
    T5Config(vocab_size=10, d_model=8, d_kv=2, d_ff=16, num_layers=1, num_heads=0)
  with pytest.raises(ValueError, match="dense_act_fn='tanh'"):
    T5Config(vocab_size=10, d_model=8, d_kv=2, d_ff=16, num_layers=1, num_heads=2,
             dense_act_fn="tanh")


# ----------------------------------------------------------------------------- tokenizer

SENTENCES = [
    "A red fox jumps over the lazy dog.",
    "Two cats sleep on a warm sofa in the afternoon sun.",
    "The camera pans slowly across a snowy mountain range at dawn.",
    "A chef chops onions and garlic in a busy kitchen.",
    "Waves crash on the rocky shore while seagulls fly overhead.",
    "A child rides a bicycle down a quiet street.",
]

PROMPTS = [
    "A red fox",
    "  two   cats\tsleep\n on the sofa  ",
    "",
    "   ",
    "Émile über café ２０ ｆｕｌｌ",  # NFKC normalisation, unknown characters
    "🦊 emoji 漢字 x",  # runs of unknown characters
    "hello</s>world <extra_id_0> x<pad> <extra_id_10><unk>",  # literal special tokens
    "The camera pans slowly across a snowy mountain range at dawn and then more waves crash",
    "AAAA",
]


@pytest.fixture(scope="module")
def spiece_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("spiece")
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(SENTENCES * 5), model_writer=model, vocab_size=60,
      model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
      minloglevel=2)
  (directory / "spiece.model").write_bytes(model.getvalue())
  return str(directory)


@pytest.fixture(scope="module")
def hf_tokenizer(spiece_dir):
  return transformers.T5Tokenizer.from_pretrained(spiece_dir)


@pytest.mark.parametrize("max_length", [6, 16, 64])
def test_tokenizer_matches_hf(spiece_dir, hf_tokenizer, max_length):
  ours = SentencePieceTokenizer(spiece_dir, max_length=max_length)
  assert isinstance(ours, interface.Tokenizer)
  ids, mask = ours(PROMPTS)
  ref = hf_tokenizer(PROMPTS, max_length=max_length, truncation=True, padding="max_length",
                     return_tensors="np")
  assert ids.dtype == np.int32 and mask.dtype == np.bool_
  assert ids.shape == mask.shape == (len(PROMPTS), max_length)
  np.testing.assert_array_equal(ids, ref["input_ids"])
  np.testing.assert_array_equal(mask, ref["attention_mask"].astype(bool))
  if max_length == 6:  # every long prompt was cut and still ends in </s>
    long_rows = [i for i, p in enumerate(PROMPTS) if len(ours.encode_unpadded(p)) > 6]
    assert long_rows and all(ids[i, -1] == 1 for i in long_rows)


def test_tokenizer_special_token_ids(spiece_dir, hf_tokenizer):
  ours = SentencePieceTokenizer(os.path.join(spiece_dir, "spiece.model"), max_length=8)
  assert ours.vocab_size == len(hf_tokenizer) == 160
  for token in ("<pad>", "</s>", "<unk>", "<extra_id_0>", "<extra_id_99>"):
    assert ours.special_ids[token] == hf_tokenizer.convert_tokens_to_ids(token), token


def test_tokenizer_errors(spiece_dir, tmp_path):
  with pytest.raises(ValueError, match="max_length must be a positive integer"):
    SentencePieceTokenizer(spiece_dir, max_length=0)
  with pytest.raises(FileNotFoundError, match="No sentencepiece model"):
    SentencePieceTokenizer(str(tmp_path), max_length=8)
  tok = SentencePieceTokenizer(spiece_dir, max_length=8)
  with pytest.raises(TypeError, match="not a single string"):
    tok("a caption")
  with pytest.raises(TypeError, match="Texts must be str"):
    tok(["fine", 3])
  # A sentencepiece model with a different special-token layout cannot drive T5.
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(SENTENCES * 5), model_writer=model,
                                 vocab_size=40, minloglevel=2)
  (tmp_path / "spiece.model").write_bytes(model.getvalue())
  with pytest.raises(ValueError, match="not a T5 sentencepiece model"):
    SentencePieceTokenizer(str(tmp_path), max_length=8)


def test_missing_sentencepiece_names_the_package(spiece_dir, monkeypatch):
  monkeypatch.setitem(sys.modules, "sentencepiece", None)  # makes `import` raise ImportError
  with pytest.raises(ImportError, match=r"stunet\[parity\]"):
    SentencePieceTokenizer(spiece_dir, max_length=8)
