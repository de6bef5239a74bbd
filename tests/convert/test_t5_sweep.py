"""Sweep of the HF T5 importer over the options it accepts, each against transformers.

`sweep_cases()` draws tiny T5 / mT5 encoders from the options `stunet.convert.t5` accepts:
every feed-forward activation it maps (plain and gated), `d_kv` unrelated to
`d_model / num_heads`, relative-attention bucket counts and maximum distances (with inputs
longer than the maximum distance, so the logarithmic buckets are used), layer counts, vocab
sizes, norm epsilons, and left/right padding. The draw is seeded; a test asserts it covers
every value. Each case is saved as safetensors, imported with `load_t5_encoder`, and its
hidden states compared with transformers' within a float32 tolerance derived from the size of
the computation (`tests/text/float_tolerance.py`), so it holds on any x86-64 CPU.
"""

import dataclasses
import inspect
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from stunet.convert import t5 as t5_convert  # noqa: E402
from stunet.text.t5 import ACTIVATIONS  # noqa: E402
from stunet.text.t5 import T5Encoder  # noqa: E402
from tests.text.float_tolerance import encoder_reduction_length  # noqa: E402
from tests.text.float_tolerance import float32_atol  # noqa: E402
from tests.convert import sweep_coverage  # noqa: E402

SEED = 5
NUM_CASES = 40
BATCH = 3

# Every activation the importer maps, plain and gated ("gated-gelu" is HF's tanh-GELU alias).
_PROJECTIONS = sorted(ACTIVATIONS) + [f"gated-{a}" for a in sorted(ACTIVATIONS)]


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  model_type: str
  kwargs: dict
  length: int
  features: tuple


def _sample(rng: random.Random, index: int) -> Case:
  feats = {}
  pick = lambda name, values: feats.setdefault(name, rng.choice(values))
  proj = _PROJECTIONS[index % len(_PROJECTIONS)]  # each one at least once
  feats["feed_forward_proj"] = proj
  heads = pick("num_heads", [1, 2, 3, 4])
  d_model = pick("d_model", [12, 16, 24])
  d_kv = pick("d_kv", [4, 6, 8, 16])
  feats["d_kv_is_d_model_over_heads"] = d_kv * heads == d_model
  buckets = pick("relative_attention_num_buckets", [4, 8, 16, 32])
  # HF needs max_distance > num_buckets // 4 (the importer refuses the rest, tested below).
  max_distance = pick("relative_attention_max_distance",
                      [d for d in (8, 16, 128) if d > buckets // 4])
  kwargs = dict(
      vocab_size=pick("vocab_size", [7, 64, 301]), d_model=d_model, d_kv=d_kv,
      d_ff=pick("d_ff", [8, 36, 64]), num_layers=pick("num_layers", [1, 2, 3]),
      num_heads=heads, relative_attention_num_buckets=buckets,
      relative_attention_max_distance=max_distance, feed_forward_proj=proj,
      layer_norm_epsilon=pick("layer_norm_epsilon", [1e-6, 1e-3]),
      dropout_rate=pick("dropout_rate", [0.0, 0.1]))  # eval mode: no effect
  length = pick("length", [5, 13, 40])
  model_type = pick("model_type", ["t5", "mt5"])
  name = f"{index:02d}-{model_type}-{proj}-h{heads}x{d_kv}-d{d_model}-L{kwargs['num_layers']}"
  return Case(name, model_type, kwargs, length, tuple(sorted(feats.items(), key=str)))


def sweep_cases(n: int = NUM_CASES, seed: int = SEED) -> list[Case]:
  rng = random.Random(seed)
  return [_sample(rng, i) for i in range(n)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(case: Case, seed: int):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, case.kwargs["vocab_size"], size=(BATCH, case.length)).astype(np.int32)
  mask = np.ones((BATCH, case.length), bool)
  mask[1, case.length * 2 // 3:] = False  # right padding
  mask[2, :case.length // 3] = False  # left padding
  return ids, mask


@pytest.mark.parametrize("case", sweep_cases(), ids=lambda c: c.name)
def test_sweep_matches_transformers(case, tmp_path, record_property):
  seed = int(case.name[:2])
  torch.manual_seed(seed)
  if case.model_type == "mt5":
    model = transformers.MT5EncoderModel(transformers.MT5Config(**case.kwargs)).eval()
  else:
    model = transformers.T5EncoderModel(transformers.T5Config(**case.kwargs)).eval()
  model.save_pretrained(str(tmp_path), safe_serialization=True)
  config, variables = t5_convert.load_t5_encoder(str(tmp_path))
  assert (config.d_kv, config.num_heads, config.relative_attention_max_distance) == (
      case.kwargs["d_kv"], case.kwargs["num_heads"], case.kwargs["relative_attention_max_distance"])

  ids, mask = _batch(case, seed)
  ours = np.asarray(jax.jit(T5Encoder(config).apply)(variables, ids, mask))
  with torch.no_grad():
    ref = model(input_ids=torch.from_numpy(ids.astype(np.int64)),
                attention_mask=torch.from_numpy(mask.astype(np.int64))).last_hidden_state.numpy()
  atol = float32_atol(ref, encoder_reduction_length(
      layers=config.num_layers, width=config.d_model, heads=config.num_heads,
      head_dim=config.d_kv, mlp=config.d_ff, length=case.length))
  record_property("max_abs_error", float(np.abs(ours - ref)[mask].max()))
  record_property("atol", atol)
  # Real tokens: padded positions' own outputs are meaningless (callers drop them).
  np.testing.assert_allclose(ours[mask], ref[mask], atol=atol, rtol=0, err_msg=case.name)


def test_sweep_is_reproducible_and_covers_the_option_space():
  expected = {
      "feed_forward_proj": set(_PROJECTIONS), "num_heads": {1, 2, 3, 4},
      "d_model": {12, 16, 24}, "d_kv": {4, 6, 8, 16},
      "d_kv_is_d_model_over_heads": {True, False},
      "relative_attention_num_buckets": {4, 8, 16, 32},
      "relative_attention_max_distance": {8, 16, 128}, "vocab_size": {7, 64, 301},
      "d_ff": {8, 36, 64}, "num_layers": {1, 2, 3}, "layer_norm_epsilon": {1e-6, 1e-3},
      "dropout_rate": {0.0, 0.1}, "length": {5, 13, 40}, "model_type": {"t5", "mt5"},
  }
  sweep_coverage.assert_reproducible_and_covering(sweep_cases, expected)
  # Inputs longer than the maximum distance reach the logarithmic buckets' clamp.
  assert any(c.length > c.kwargs["relative_attention_max_distance"] for c in sweep_cases())


# ---- every option transformers has is handled or refused -------------------------------------

@pytest.mark.parametrize("config_class", ["T5Config", "MT5Config"])
def test_every_transformers_option_is_accounted_for(config_class):
  cls = getattr(transformers, config_class)
  params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
  keys = params | set(cls().to_dict())
  assert keys - t5_convert.HANDLED_CONFIG_KEYS == set()
  # A default config.json converts without complaint.
  assert t5_convert.t5_config_from_hf(cls().to_dict()).num_layers == cls().num_layers


def _hf_dict(**kwargs):
  return transformers.T5Config(vocab_size=8, d_model=8, d_kv=4, d_ff=8, num_layers=1,
                               num_heads=2, **kwargs).to_dict()


_TRANSFORMERS_ACTIVATIONS = sorted(transformers.activations.ACT2FN)


@pytest.mark.parametrize("activation", [a for a in _TRANSFORMERS_ACTIVATIONS
                                        if a not in ACTIVATIONS])
@pytest.mark.parametrize("gated", [False, True])
def test_unmapped_activations_are_refused_by_name(activation, gated):
  proj = f"gated-{activation}" if gated else activation
  with pytest.raises(ValueError, match=f"feed_forward_proj='{proj}'.*'{activation}'"):
    t5_convert.t5_config_from_hf(_hf_dict(feed_forward_proj=proj))


@pytest.mark.parametrize("key, value, message", [
    ("model_type", "umt5", "model_type='umt5'"),
    ("model_type", "longt5", "model_type='longt5'"),
    ("is_decoder", True, "is_decoder=true"),
    ("architectures", ["T5ForQuestionAnswering"], "T5ForQuestionAnswering"),
    ("is_gated_act", True, "is_gated_act=True contradicts"),
    ("dense_act_fn", "gelu", "dense_act_fn='gelu' contradicts"),
    ("relative_attention_num_buckets", 0, "relative_attention_num_buckets"),
    ("d_kv", 0, "d_kv"),
    ("feed_forward_proj", "gated-gelu-x", "'ACT' or 'gated-ACT'"),
    ("relative_attention_num_buckets", 2, "relative_attention_num_buckets=2"),
    ("relative_attention_max_distance", 8, "relative_attention_max_distance=8"),
    ("rope_theta", 10000.0, r"\['rope_theta'\]"),
])
def test_refusals_name_the_option(key, value, message):
  config = {**_hf_dict(), key: value}
  with pytest.raises(ValueError, match=message):
    t5_convert.t5_config_from_hf(config)
