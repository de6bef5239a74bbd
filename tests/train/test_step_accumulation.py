"""Gradient accumulation in the train step (`optim.grad_accum_steps`).

One update from k microbatches must be the update of their mean gradient, keep frozen leaves
bitwise, give the same numbers on one and on four devices, and split each device's batch
without moving examples between devices.
"""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

from stunet.data import global_batch
from stunet.parallel import hlo
from stunet.parallel import mesh as mesh_lib
from stunet.train import optimizer
from stunet.train import preflight
from stunet.train import step as step_lib
from tests.train.conftest import fixed_batch
from tests.train.conftest import tiny_config
from tests.train.test_step import Run

K = 2


def _config(mesh_shape=(1, -1, 1), k=K):
  c = tiny_config(num_steps=20, mesh_shape=mesh_shape, two_levels=True)
  c.optim.grad_accum_steps = k
  return c


@pytest.fixture(scope="module")
def one_device():
  return Run(_config(), "t2i", jax.devices()[:1])


@pytest.fixture(scope="module")
def batch(one_device):
  return fixed_batch(one_device.setup.tokenizer, "image", one_device.setup.example_shape)


def _host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def test_microbatch_i_holds_examples_i_plus_multiples_of_k():
  fn = step_lib.StepFn(model=None, text_module=None, labels=None, tx=None, schedule=None,
                       diffusion=None, modality="image", ema_decay=0.9, seed=0,
                       grad_accum_steps=3)
  x = jnp.arange(12 * 2).reshape(12, 2)
  micro = np.asarray(fn.microbatches({"x": x})["x"])
  assert micro.shape == (3, 4, 2)
  for i in range(3):
    np.testing.assert_array_equal(micro[i], np.asarray(x)[i::3])
  with pytest.raises(ValueError, match=r"optim.grad_accum_steps=3 does not divide the batch "
                                       r"of 10 examples"):
    fn.microbatches({"x": jnp.zeros((10, 2))})


def test_microbatches_of_a_sharded_batch_stay_on_their_devices():
  """Device d's microbatch i is taken from device d's own examples: the split compiles to
  no collective at all, and the microbatches stay sharded over the batch axes."""
  config = _config(mesh_shape=(2, 2, 1))
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:4])
  sharding = global_batch.batch_sharding(mesh, config.data.batch_axes)
  fn = step_lib.StepFn(model=None, text_module=None, labels=None, tx=None, schedule=None,
                       diffusion=None, modality="image", ema_decay=0.9, seed=0,
                       grad_accum_steps=K)
  x = jax.device_put(jnp.arange(8 * 4 * 3, dtype=jnp.float32).reshape(8, 4, 3), sharding)
  split = jax.jit(lambda x: fn.microbatches({"x": x})["x"],
                  out_shardings=jax.sharding.NamedSharding(mesh, P(None, ("data", "fsdp"))))
  text = split.lower(x).compile().as_text()
  assert not hlo.collectives(text), hlo.collectives(text)
  np.testing.assert_array_equal(np.asarray(split(x))[1], np.asarray(x)[1::K])


def test_same_update_on_one_and_four_devices(one_device, batch):
  """(data=2, fsdp=2): two examples per device, one per device and microbatch; the numbers
  are those of one device."""
  four = Run(_config(mesh_shape=(2, 2, 1)), "t2i", jax.devices()[:4])
  jax.tree.map(np.testing.assert_array_equal, _host(one_device.state.params),
               _host(four.state.params))  # same init
  new1, m1 = one_device.step(one_device.state, one_device.put(batch))
  one_device.state = new1  # the old state was donated
  new4, m4 = four.step(four.state, four.put(batch))
  np.testing.assert_allclose(float(m1["loss"]), float(m4["loss"]), rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               _host(new1.params), _host(new4.params))


def test_update_is_that_of_the_mean_microbatch_gradient(one_device, batch):
  """The k=2 step against its definition: mean of the per-microbatch losses and gradients
  (each microbatch with its own split of the step's keys), then one optimiser update."""
  run = one_device
  fn = run.setup.step_fn()
  assert fn.grad_accum_steps == K
  state = run.state
  start = _host(state)
  placed = run.put(batch)

  @jax.jit
  def expected(state, batch):
    rng = jax.random.fold_in(jax.random.key(fn.seed), state.step)
    keys = tuple(jax.random.split(r, K) for r in jax.random.split(rng, 3))
    inputs = {"x0": step_lib.to_unit_range(batch["image"]), "ids": batch["text_ids"],
              "mask": batch["text_mask"].astype(bool)}
    micro = fn.microbatches(inputs)
    losses, grads = [], []
    for i in range(K):
      loss, _, g = fn.loss_and_grads(state.params, jax.tree.map(lambda x: x[i], micro),
                                     tuple(k[i] for k in keys))
      losses.append(loss)
      grads.append(g)
    mean = jax.tree.map(lambda *g: sum(g) / K, *grads)
    updates, _ = fn.tx.update(mean, state.opt_state, state.params)
    return sum(losses) / K, optax.apply_updates(state.params, updates)

  want_loss, want_params = jax.device_get(expected(state, placed))
  new, metrics = run.step(state, placed)
  run.state = new
  np.testing.assert_allclose(float(metrics["loss"]), float(want_loss), rtol=1e-5)
  got = _host(new.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got,
               _host(want_params))
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(start.params), jax.tree.leaves(got)))


def test_video_stage_accumulation_keeps_frozen_leaves_bitwise(one_device):
  config = _config()
  run = Run(config, "video", jax.devices()[:1], parent=one_device.state.ema_weights)
  batch = run.put(fixed_batch(run.setup.tokenizer, "video", run.setup.example_shape))
  start = _host(run.state)
  state, metrics = run.step(run.state, batch)
  assert np.isfinite(float(metrics["loss"]))
  now = _host(state)
  moved = 0
  for label, a, b, e0, e1 in zip(jax.tree.leaves(run.setup.labels),
                                 jax.tree.leaves(start.params), jax.tree.leaves(now.params),
                                 jax.tree.leaves(start.ema_weights),
                                 jax.tree.leaves(now.ema_weights)):
    if label == optimizer.FROZEN:
      assert a.tobytes() == b.tobytes() and e0.tobytes() == e1.tobytes()
    else:
      moved += not np.array_equal(a, b)
  assert moved > 0


@pytest.mark.parametrize("value", [0, -1])
def test_bad_grad_accum_steps_names_the_field(value):
  config = _config(k=value)
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  with pytest.raises(ValueError, match=r"optim\.grad_accum_steps must be"):
    preflight.check_run(config, mesh)


def test_grad_accum_steps_must_divide_the_per_device_batch():
  config = _config(mesh_shape=(2, 4, 1), k=3)  # 8 examples over 8 devices: 1 each
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices())
  with pytest.raises(ValueError, match=r"^stage 't2i': optim\.grad_accum_steps=3 does not "
                                       r"divide the per-device batch of 1 \(data\.global_batch_"
                                       r"size=8 over a data-parallel size of 8\)"):
    preflight.check_run(config, mesh)
