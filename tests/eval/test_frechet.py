"""Tests for the Fréchet distance and the FVD-shapes feature network."""

import numpy as np
import pytest

from stunet.eval import feature_net
from stunet.eval import frechet

_SETTINGS = feature_net.TrainSettings(data_config="tiny", steps=100, batch_size=16,
                                      num_clips=128, widths=(8, 16, 32), learning_rate=1e-2)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("feature_net"))


@pytest.fixture(scope="module")
def net(cache_dir):
  return feature_net.load_or_train(cache_dir, _SETTINGS)


@pytest.fixture(scope="module")
def held_out():
  clips, _, examples = feature_net.generate_clips("tiny", "test", 0, 64)
  return clips, examples


def test_identical_sets_give_zero_and_distance_is_symmetric():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
  b = rng.normal(size=(150, 6)) * 2.0 + 1.0
  assert frechet.feature_frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
  assert frechet.feature_frechet_distance(a, b) == pytest.approx(
      frechet.feature_frechet_distance(b, a), rel=1e-9)


def test_mean_shift_adds_its_squared_length_and_grows_monotonically():
  a = np.random.default_rng(1).normal(size=(300, 5))
  direction = np.ones(5) / np.sqrt(5)
  distances = [frechet.feature_frechet_distance(a, a + s * direction) for s in (0, 1, 2, 4)]
  np.testing.assert_allclose(distances, [0, 1, 4, 16], atol=1e-8)


def test_matches_the_closed_form_for_diagonal_gaussians():
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 4.0, 1.0])
  # |mu1 - mu2|^2 + sum (sigma1 - sigma2)^2 with standard deviations (1,2,3) and (2,2,1).
  assert frechet.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(5.0 + 1.0 + 0.0 + 4.0)
  with pytest.raises(ValueError, match="shape mismatch"):
    frechet.frechet_distance(mu1, s1, mu2[:2], s2)
  with pytest.raises(ValueError, match="at least 2"):
    frechet.feature_frechet_distance(np.zeros((1, 3)), np.zeros((4, 3)))


def test_user_feature_extractor_hook(held_out):
  clips, _ = held_out
  # Mean colour per clip: shifting the red channel by 5 (no clipping: the brightest value is
  # 250) shifts the mean feature by exactly 5 and leaves its covariance unchanged.
  mean_colour = lambda v: v.reshape(len(v), -1, 3).mean(1)
  shifted = (clips.astype(np.int32) + np.array([5, 0, 0])).astype(np.uint8)
  assert clips.max() <= 250
  assert frechet.frechet_video_distance(clips, shifted, mean_colour) == pytest.approx(25.0)
  with pytest.raises(ValueError, match=r"must map 64 real clips to \[64, d\]"):
    frechet.frechet_video_distance(clips, clips, lambda v: v.mean(axis=(1, 2, 3, 4)))
  assert "not I3D" in frechet.FVD_NAME


def test_feature_net_classifies_held_out_colours_well_above_chance(net, held_out):
  clips, examples = held_out
  logits = net.logits(clips)
  offset = feature_net.label_offset("colour")
  hits, chance = [], []
  for row, example in zip(logits, examples):
    k = int(example["num_objects"])
    top = set(np.argsort(-row[offset:offset + 8])[:k].tolist())
    hits.append(len(top & set(example["colour"][:k].tolist())) / k)
    chance.append(k / 8)
  assert np.mean(hits) >= 2 * np.mean(chance), (np.mean(hits), np.mean(chance))


def test_colour_shift_through_the_network_grows_the_distance(net, held_out):
  clips, _ = held_out
  real, _, _ = feature_net.generate_clips("tiny", "validation", 0, 64)
  distances = []
  for shift in (0, 20, 40, 80):
    shifted = np.clip(clips.astype(np.int32) + np.array([shift, -shift, 0]), 0, 255)
    distances.append(frechet.frechet_video_distance(real, shifted.astype(np.uint8),
                                                    net.extract))
  assert all(a < b for a, b in zip(distances, distances[1:])), distances


def test_weights_are_cached_as_arrays_and_reload_identically(net, cache_dir, held_out):
  clips, _ = held_out
  path = f"{cache_dir}/feature_net_{_SETTINGS.key()}.npz"
  with np.load(path, allow_pickle=False) as data:
    assert "conv0/kernel" in data.files
  again = feature_net.load_or_train(cache_dir, _SETTINGS)  # a cache hit: no training
  np.testing.assert_array_equal(again.extract(clips[:4]), net.extract(clips[:4]))
  assert again.extract(clips[:3]).shape == (3, 64)
  with pytest.raises(ValueError, match="not a saved feature net"):
    feature_net.load(f"{cache_dir}/missing.npz")
  with pytest.raises(ValueError, match="unknown shapes_video config"):
    feature_net.generate_clips("nope", "train", 0, 2)
