"""Tests for the conditioning/mask builders and the 7-channel model input (SPEC §5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stunet.conditioning import masks

B, T, H, W = 2, 4, 6, 8


def _video(seed=0):
  return jax.random.uniform(jax.random.key(seed), (B, T, H, W, 3), minval=-1, maxval=1)


def _region():
  return masks.box_region(H, W, 1, 2, 3, 4)  # rows 1..3, cols 2..5


def test_box_region():
  region = np.asarray(_region())
  assert region.sum() == 12 and region[1:4, 2:6].all()
  per_example = masks.box_region(H, W, jnp.array([0, 5]), jnp.array([0, 7]), jnp.array([1, 1]),
                                 jnp.array([1, 1]))
  assert per_example.shape == (2, H, W)
  assert np.argwhere(per_example[0]).tolist() == [[0, 0]]
  assert np.argwhere(per_example[1]).tolist() == [[5, 7]]


def test_image_to_video_layout():
  image = _video()[:, 0]
  cond, mask = masks.image_to_video(image, T)
  assert cond.shape == (B, T, H, W, 3) and mask.shape == (B, T, H, W, 1)
  np.testing.assert_array_equal(mask[:, 0], 1)
  np.testing.assert_array_equal(mask[:, 1:], 0)
  np.testing.assert_array_equal(cond[:, 0], image)
  np.testing.assert_array_equal(cond[:, 1:], 0)


def test_inpainting_and_outpainting_layout():
  video, region = _video(), _region()
  cond, mask = masks.inpainting(video, region)
  inside = np.asarray(region)[None, None, :, :, None]
  np.testing.assert_array_equal(mask, np.broadcast_to(~inside, mask.shape).astype(np.float32))
  np.testing.assert_array_equal(cond, np.where(inside, 0.0, video))
  cond, mask = masks.outpainting(video, region)
  np.testing.assert_array_equal(mask, np.broadcast_to(inside, mask.shape).astype(np.float32))
  np.testing.assert_array_equal(cond, np.where(inside, video, 0.0))
  # A per-frame region is used as given.
  moving = jnp.zeros((B, T, H, W), bool).at[:, 2, 0, 0].set(True)
  _, mask = masks.inpainting(video, moving)
  assert float(mask.sum()) == B * T * H * W - B


def test_cinemagraph_layout():
  image, region = _video()[:, 0], _region()
  cond, mask = masks.cinemagraph(image, region, T)
  np.testing.assert_array_equal(mask[:, 0], 1)  # frame 0 fully known
  inside = np.asarray(region)[None, :, :, None]
  for f in range(1, T):
    np.testing.assert_array_equal(mask[:, f], np.broadcast_to(~inside, (B, H, W, 1)))
    np.testing.assert_array_equal(cond[:, f], np.where(inside, 0.0, image))
  np.testing.assert_array_equal(cond[:, 0], image)


def test_model_input_is_seven_channels():
  video, region = _video(), _region()
  noisy = _video(1)
  cond, mask = masks.inpainting(video, region)
  # Unblanked conditioning is still masked inside model_input.
  x = masks.model_input(noisy, video, mask)
  assert x.shape == (B, T, H, W, 7)
  np.testing.assert_array_equal(x[..., :3], noisy)
  np.testing.assert_array_equal(x[..., 3:6], cond)
  np.testing.assert_array_equal(x[..., 6:], mask)
  with pytest.raises(ValueError, match="must be"):
    masks.model_input(noisy, cond, mask[..., 0])


@pytest.mark.parametrize("fn,args,match", [
    (masks.image_to_video, (jnp.zeros((B, T, H, W, 3)), T), r"image must be \[b, h, w, 3\]"),
    (masks.image_to_video, (jnp.zeros((B, H, W, 3)), 0), "frames must be a positive integer"),
    (masks.inpainting, (jnp.zeros((B, T, H, W, 3)), jnp.zeros((H, W + 1), bool)),
     r"region must be \[h, w\], \[b, h, w\] or \[b, t, h, w\]"),
    (masks.outpainting, (jnp.zeros((T, H, W, 3)), jnp.zeros((H, W), bool)),
     r"video must be \[b, t, h, w, 3\]"),
    (masks.cinemagraph, (jnp.zeros((B, H, W, 3)), jnp.zeros((B, T, H, W), bool), T),
     r"cinemagraph region must be \[h, w\] or \[b, h, w\]"),
])
def test_builder_errors(fn, args, match):
  with pytest.raises(ValueError, match=match):
    fn(*args)


def test_random_task_draws_every_task_with_its_layout():
  b = 64
  video = jax.random.uniform(jax.random.key(3), (b, T, H, W, 3), minval=-1, maxval=1)
  target, cond, mask, task = (np.asarray(a) for a in
                               jax.jit(masks.random_task)(jax.random.key(0), video))
  video = np.asarray(video)
  assert set(task.tolist()) == {0, 1, 2, 3}
  for i in range(b):
    m = np.asarray(mask[i, ..., 0])
    np.testing.assert_array_equal(cond[i], target[i] * m[..., None])
    name = masks.TASKS[task[i]]
    if name == "image_to_video":
      assert m[0].all() and not m[1:].any()
    elif name == "inpainting":
      assert (m == m[0]).all() and 0 < (1 - m[0]).sum() < H * W  # same hole in every frame
    elif name == "outpainting":
      assert (m == m[0]).all() and 0 < m[0].sum() < H * W
    else:
      assert m[0].all() and (m[1:] == m[1]).all() and not m[1].all()
      # Known pixels of the target stay the still frame.
      known = m[1:].astype(bool)
      np.testing.assert_array_equal(target[i, 1:][known],
                                    np.broadcast_to(video[i, 0], (T - 1, H, W, 3))[known])
    if name != "cinemagraph":
      np.testing.assert_array_equal(target[i], video[i])
  _, _, _, only = masks.random_task(jax.random.key(1), jnp.asarray(video),
                                    tasks=("inpainting",))
  assert set(np.asarray(only).tolist()) == {1}
  with pytest.raises(ValueError, match="non-empty subset"):
    masks.random_task(jax.random.key(1), jnp.asarray(video), tasks=("deblur",))
