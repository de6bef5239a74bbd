"""The measuring kit (`stunet.train.measure`): batch shapes, parameter counts, XLA's numbers."""

import jax
import jax.numpy as jnp
import numpy as np

from stunet.parallel import mesh as mesh_lib
from stunet.train import build
from stunet.train import measure
from stunet.train import stages as stages_lib
from stunet.train import state as state_lib
from tests.train.conftest import tiny_config


def _video_setup():
  return build.build_stage(tiny_config(), stages_lib.get_stage("video"))


def test_abstract_batch_has_the_pipelines_shapes_and_dtypes():
  setup = _video_setup()
  batch = measure.abstract_batch(setup, 3)
  length = setup.tokenizer.max_length
  assert batch["video"].shape == (3,) + setup.example_shape
  assert batch["video"].dtype == jnp.uint8
  assert (batch["text_ids"].shape, batch["text_ids"].dtype) == ((3, length), jnp.int32)
  assert (batch["text_mask"].shape, batch["text_mask"].dtype) == ((3, length), jnp.bool_)


def test_param_counts_split_the_state():
  setup = _video_setup()
  mesh = mesh_lib.make_mesh(setup.config.mesh, devices=jax.devices()[:1])
  state = state_lib.abstract_state(setup.boxed_init, mesh, setup.rules, jax.random.key(0))
  counts = measure.param_counts(state.params, setup.labels)
  sizes = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  assert counts["all"] == sizes(state.params) == counts["unet"] + counts["text"]
  assert counts["text"] == sizes(state.params["text"]) > 0
  assert counts["unet"] == counts["unet_spatial"] + counts["unet_temporal"]
  assert 0 < counts["unet_temporal"] < counts["unet_spatial"]
  # The video stage trains the temporal layers only (the paper's setting).
  assert counts["trainable"] == counts["unet_temporal"]


def test_flops_and_memory_of_a_matmul():
  n = 64
  x = jax.ShapeDtypeStruct((n, n), jnp.float32)
  mesh = mesh_lib.make_mesh(tiny_config().mesh, devices=jax.devices()[:1])
  compiled, seconds = measure.compile_timed(jax.jit(lambda a, b: a @ b), (x, x), mesh)
  assert seconds > 0
  assert measure.flops(compiled) == 2 * n**3
  memory = measure.memory(compiled)
  assert memory.argument_bytes == 2 * n * n * 4 and memory.output_bytes == n * n * 4
  assert memory.live_bytes == (memory.argument_bytes + memory.output_bytes
                               - memory.alias_bytes + memory.temp_bytes)
  assert memory.peak_bytes == max(memory.compiler_peak_bytes, memory.live_bytes)


def test_random_like_keeps_shapes_dtypes_and_shardings():
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = {"w": jax.ShapeDtypeStruct((5, 3), jnp.bfloat16, sharding=sharding),
              "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding)}
  arrays = measure.random_like(abstract, seed=1)
  assert arrays["w"].dtype == jnp.bfloat16 and arrays["w"].shape == (5, 3)
  w = np.asarray(arrays["w"], np.float32)
  assert (w >= 0).all() and (w < 0.0101).all() and w.std() > 0
  assert int(arrays["step"]) == 0
  again = measure.random_like(abstract, seed=1)
  np.testing.assert_array_equal(np.asarray(again["w"], np.float32), w)


def test_median_seconds_skips_the_warmup_calls():
  calls = []
  assert measure.median_seconds(lambda: calls.append(1), repeats=3, warmup=2) >= 0
  assert len(calls) == 5
