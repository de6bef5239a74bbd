"""AOT pod-fit check: topology names, and compiling the tiny config's step for a TPU slice.

The compile tests need libtpu (the `tpu` extra) and run `experiments.aot_check` in a subprocess
(JAX is initialised for CPU in this one).
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from stunet.apps import aot

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason="needs libtpu: pip install -e .[tpu]")

# A smaller U-Net than tiny's (two levels) on 4-frame clips keeps the TPU compiles short: the
# TPU compiler's time grows with the activation shapes, not only with the op count (this train
# step at batch 4: 62 s, against 83 s on tiny's 8 frames at batch 8). At 8x8 px the compiler
# keeps every temporary on chip and reports none, which the report's test needs to see.
_SMALL = ["--config.model.channel_mult=(1,2)", "--config.model.num_res_blocks=(1,1)",
          "--config.model.attention_levels=(False,True)", "--config.model.num_heads=(2,2)",
          "--config.model.temporal_factors=(2,)", "--config.data.frames=4"]


@pytest.mark.parametrize("name, slices, topology, chips", [
    ("v4-8", 1, "v4:2x2x1", 4),
    ("v4-32", 1, "v4:2x2x4", 16),
    ("v5p-128", 1, "v5:4x4x4", 64),
    ("v5p-256", 2, "v5:4x4x8", 256),
    ("v5e-4", 1, "v5e:2x2", 4),
    ("v5litepod-256", 1, "v5e:16x16", 256),
    ("v5e-8", 1, "v5e:2x4", 8),
    ("v6e-64", 1, "v6e:8x8", 64),
])
def test_parse_topology(name, slices, topology, chips):
  t = aot.parse_topology(name, slices)
  assert t.topology_name == topology
  assert t.num_chips == chips


def test_parse_topology_chip_facts():
  assert aot.parse_topology("v5p-8").chip.chip_config == "megacore"
  assert aot.parse_topology("v6e-4").chip.chip_config == "default"
  assert aot.parse_topology("v5e-4").chip.peak_flops == 197e12
  assert aot.parse_topology("v4-8").chip.hbm_bytes == int(30.75 * aot.GIB)


@pytest.mark.parametrize("name, message", [
    ("v3-8", "expected v4-N"),
    ("v5p-6", "not a power of two"),
    ("v4-7", "multiple of 2"),
    ("v5p-4", "smallest v5p slice"),
])
def test_parse_topology_errors(name, message):
  with pytest.raises(ValueError, match=message):
    aot.parse_topology(name)


def test_oom_message_parsed():
  message = ("RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory "
             "space hbm. Used 20.50G of 15.75G hbm. Exceeded hbm capacity by 4.75G.")
  used, over = aot._oom_bytes(message)
  assert used == int(20.5 * aot.GIB)
  assert over == int(4.75 * aot.GIB)
  message = ("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
             "temporaries (59.00G) exceeds available HBM (15.75G).")
  used, over = aot._oom_bytes(message)
  assert used == int(59 * aot.GIB)
  assert over == int(59 * aot.GIB) - int(15.75 * aot.GIB)


def _aot_check(*args):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  return subprocess.run(
      [sys.executable, "-m", "experiments.aot_check",
       "--config=experiments/configs/tiny.py", "--topology=v5e-4", *_SMALL, *args],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _gib(text, label):
  m = re.search(label + r" ([\d.]+) (MiB|GiB)", text)
  assert m, f"no {label!r} in:\n{text}"
  return float(m.group(1)) * (1 if m.group(2) == "MiB" else 1024)  # MiB


@pytest.mark.slow
@needs_libtpu
def test_tiny_fits_v5e_2x2():
  r = _aot_check("--config.data.global_batch_size=4")
  assert r.returncode == 0, r.stdout + r.stderr
  out = r.stdout
  assert "v5e:2x2" in out and "fsdp=4" in out
  assert "fits       yes" in out
  assert _gib(out, "params") > 0
  assert _gib(out, "temporaries") > 0
  flops = float(re.search(r"flops\s+([\d.e+]+) per device", out).group(1))
  assert flops > 1e6
  # On TPU the splash kernels run where the lengths allow; their FLOPs (invisible to XLA's
  # cost analysis) are tallied at trace time and count towards the step time.
  splash = re.search(r"\+ ([\d.e+]+) in splash attention kernels", out)
  splash = float(splash.group(1)) if splash else 0.0
  peak_s, half_s = map(float, re.search(r"step time\s+([\d.e+-]+) s at peak.*, ([\d.e+-]+) s at "
                                        r"50%", out).groups())
  assert peak_s == pytest.approx((flops + splash) / 197e12, rel=1e-3)
  assert half_s == pytest.approx(2 * peak_s, rel=1e-3)


@pytest.mark.slow
@needs_libtpu
def test_oversized_batch_reports_overflow_and_fails():
  # 4096 clips of 4 frames per chip without remat: the saved activations alone need several
  # times a v5e's 15.75 GiB.
  r = _aot_check("--config.data.global_batch_size=16384")
  assert r.returncode == 1, r.stdout + r.stderr
  assert re.search(r"fits       NO: over by [\d.]+ GiB", r.stdout), r.stdout
  assert "15.75 GiB HBM" in r.stdout
  assert "--config.model.remat=True" in r.stdout
  # Accumulation keeps the global batch: it is named before shrinking the batch.
  assert "--config.optim.grad_accum_steps=2 (the global batch of 16384 stays" in r.stdout


@needs_libtpu
def test_splash_attention_compiles_for_a_tpu_slice_from_this_host():
  """`attention_impl='auto'` on TPU devices picks the splash kernel (a Mosaic custom call in
  `shard_map` over batch and heads), forward and backward, bf16 at the paper's head dim 64
  with a key mask; the 5-frame temporal attention stays on XLA."""
  script = """
import numpy as np, jax, jax.numpy as jnp, flax.linen as nn
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
from stunet.apps import aot
from stunet.nn import attention
devices = aot.parse_topology("v5e-4").devices()
mesh = jax.sharding.Mesh(np.array(devices).reshape(2, 2), ("fsdp", "tensor"),
                         axis_types=(AxisType.Auto,) * 2)
rules = (("activation_batch", "fsdp"), ("heads", "tensor"))
spec = NamedSharding(mesh, P("fsdp", None, "tensor", None))
def qkv(n, s):
  return (jax.ShapeDtypeStruct((4, n, 4, 64), jnp.bfloat16, sharding=spec),
          jax.ShapeDtypeStruct((4, s, 4, 64), jnp.bfloat16, sharding=spec),
          jax.ShapeDtypeStruct((4, s, 4, 64), jnp.bfloat16, sharding=spec),
          jax.ShapeDtypeStruct((4, s), jnp.bool_, sharding=NamedSharding(mesh, P("fsdp", None))))
loss = lambda q, k, v, m: jnp.sum(
    attention.dot_product_attention(q, k, v, m, "auto").astype(jnp.float32))
with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
  for n, s in ((1024, 128), (5, 5)):
    for name, fn in (("forward", lambda q, k, v, m: attention.dot_product_attention(
        q, k, v, m, "auto")), ("gradient", jax.grad(loss, argnums=(0, 1, 2)))):
      text = jax.jit(fn).lower(*qkv(n, s)).compile().as_text()
      print(n, s, name, text.count('custom_call_target="tpu_custom_call"'))
"""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", ALLOW_MULTIPLE_LIBTPU_LOAD="1")
  r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  counts = {tuple(l.split()[:3]): int(l.split()[3]) for l in r.stdout.strip().splitlines()}
  assert counts[("1024", "128", "forward")] >= 1  # the splash kernel
  assert counts[("1024", "128", "gradient")] >= 2  # its forward and backward kernels
  assert counts[("5", "5", "forward")] == counts[("5", "5", "gradient")] == 0  # XLA


@needs_libtpu
def test_a_context_axis_of_two_on_a_4x4x4_torus_needs_split_physical_axes():
  script = """
from stunet.apps import aot
from stunet.parallel import mesh as mesh_lib
from stunet.train import config as train_config
devices = aot.parse_topology("v5p-128").devices()
c = train_config.mesh_config()
c.axes, c.shape = ("data", "fsdp", "context", "tensor"), (1, 32, 2, 1)
try:
  mesh_lib.make_mesh(c, devices)
except ValueError as e:
  print("refused:", str(e).splitlines()[0][:400])
c.allow_split_physical_axes = True
print(dict(mesh_lib.make_mesh(c, devices).shape))
"""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", ALLOW_MULTIPLE_LIBTPU_LOAD="1")
  r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  refused, shape = r.stdout.strip().splitlines()
  assert refused.startswith("refused: mesh.shape=(1, 32, 2, 1) over axes ('data', 'fsdp', "
                            "'context', 'tensor') does not map onto the slice's physical torus")
  assert "--config.mesh.allow_split_physical_axes=True" in refused
  assert shape == "{'data': 1, 'fsdp': 32, 'context': 2, 'tensor': 1}"


@needs_libtpu
def test_two_slices_form_a_hybrid_mesh():
  # The compile-only devices of two v5e 2x2 slices; each mesh axis spans the slices that
  # mesh.dcn_shape gives it. No compile, so it runs in a second (sub)process quickly.
  script = """
from stunet.apps import aot
from stunet.parallel import mesh as mesh_lib
from stunet.train import config as train_config
devices = aot.parse_topology("v5e-4", 2).devices()
c = train_config.mesh_config()
c.shape = (2, 4, 1)
for dcn in [(), (1, 2, 1)]:
  c.dcn_shape = dcn
  mesh = mesh_lib.make_mesh(c, devices)
  print(dict(mesh.shape), [[d.slice_index for d in row.flat] for row in mesh.devices])
"""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", ALLOW_MULTIPLE_LIBTPU_LOAD="1")
  r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  lines = r.stdout.strip().splitlines()
  # Default: the data axis crosses slices (only gradients over DCN); fsdp stays in a slice.
  assert lines[0] == "{'data': 2, 'fsdp': 4, 'tensor': 1} [[0, 0, 0, 0], [1, 1, 1, 1]]"
  assert lines[1] == "{'data': 2, 'fsdp': 4, 'tensor': 1} [[0, 0, 1, 1], [0, 0, 1, 1]]"


@pytest.mark.slow
@needs_libtpu
def test_sample_step_on_two_slices():
  r = _aot_check("--what=sample", "--num_slices=2", "--config.mesh.shape=(2,4,1)",
                 "--config.mesh.dcn_shape=(2,1,1)")
  assert r.returncode == 0, r.stdout + r.stderr
  out = r.stdout
  assert "x2 slice(s): 8 chips" in out and "data=2, fsdp=4" in out
  assert "one guided denoising step (x8 per sample" in out
  assert "batch 8 clips" in out  # one per data-parallel device
  assert "fits       yes" in out
  flops = float(re.search(r"flops\s+([\d.e+]+) per device", out).group(1))
  peak_s = float(re.search(r"step time\s+([\d.e+-]+) s at peak", out).group(1))
  sample_s = float(re.search(r"sample\s+([\d.e+-]+) s at peak", out).group(1))
  assert flops > 1e6
  assert sample_s == pytest.approx(8 * peak_s, rel=1e-3)
  # The compiler's HBM traffic and the HLO's collectives, and the roofline derived from them.
  assert float(re.search(r"hbm bytes\s+([\d.e+]+) accessed", out).group(1)) > 0
  assert re.search(r"collectives all-gather [\d.]+ [MG]iB, all-reduce", out), out
  roofline = float(re.search(r"roofline\s+([\d.e+-]+) s", out).group(1))
  assert roofline >= peak_s * (1 - 1e-3)
  assert 0 < float(re.search(r"implied MFU ([\d.]+)%", out).group(1)) <= 100


def _v5e_256_over_hbm(global_batch_size):
  """A train-step report of fsdp=256 on v5e-256 that asks 20 GiB per chip (HBM 15.75)."""
  return aot.FitReport(
      topology=aot.parse_topology("v5e-256"), mesh_shape={"data": 1, "fsdp": 256, "tensor": 1},
      global_batch_size=global_batch_size, param_bytes=1, opt_bytes=1, ema_bytes=1,
      argument_bytes=0, output_bytes=0, alias_bytes=0, temp_bytes=0, peak_bytes=20 * aot.GIB,
      flops=0.0, compile_seconds=0.0)


def test_roofline_is_the_binding_limit_and_implies_the_mfu():
  report = _v5e_256_over_hbm(global_batch_size=256)
  chip = report.topology.chip
  report.flops = chip.peak_flops * 0.5  # 0.5 s of compute
  report.bytes_accessed = chip.hbm_bandwidth * 2.0  # 2 s of HBM traffic: memory-bound
  assert report.roofline_seconds() == pytest.approx(2.0)
  assert report.roofline_mfu() == pytest.approx(0.25)
  report.bytes_accessed = chip.hbm_bandwidth * 0.1  # compute-bound
  assert report.roofline_seconds() == pytest.approx(0.5)
  assert report.roofline_mfu() == pytest.approx(1.0)


def test_levers_when_one_clip_per_device():
  report = _v5e_256_over_hbm(global_batch_size=256)
  from experiments.configs import base  # pylint: disable=g-import-not-at-top
  text = "\n".join(aot.levers(report, base.get_config()))
  assert "halve the batch" not in text and "grad_accum_steps=2 " not in text
  # The global batch stays: 4 microbatches of 64 clips, each split over 4 devices.
  assert ("--config.mesh.shape=(1,-1,4) with --config.optim.grad_accum_steps=4 (the global "
          "batch of 256 stays") in text
  report.what = "sample"
  assert "--config.mesh.shape=(1,-1,4) with --sample_batch=64" in "\n".join(
      aot.levers(report, base.get_config()))


def test_levers_split_a_clips_frames_over_a_context_axis_first():
  from experiments.configs import paper  # pylint: disable=g-import-not-at-top
  config = paper.get_config()  # 80 frames: 4 divides 80, 40 and 20
  report = _v5e_256_over_hbm(global_batch_size=256)
  text = aot.levers(report, config)
  frames = [i for i, l in enumerate(text) if "over 'context'" in l]
  tensor = [i for i, l in enumerate(text) if "sharded over 'tensor'" in l]
  assert frames and tensor and frames[0] < tensor[0], text
  assert ("split each clip's 80 frames over 4 devices: --config.mesh.axes='(data,fsdp,context,"
          "tensor)' --config.mesh.shape='(1,-1,4,1)' with --config.optim.grad_accum_steps=4"
          ) in text[frames[0]]
  # With a context axis of 4 already: 16 next, and the tensor lever keeps the context size.
  report.mesh_shape = {"data": 1, "fsdp": 64, "context": 4, "tensor": 1}
  report.global_batch_size = 64
  text = "\n".join(aot.levers(report, config))
  assert "split each clip's 80 frames over 16 devices" in text
  assert "--config.mesh.shape='(1,-1,4,4)'" in text
  # An image stage, or frames the next context size does not divide: no frame lever.
  report.stage_modality = "image"
  assert "over 'context'" not in "\n".join(aot.levers(report, config))
  report.stage_modality = "video"
  config.data.frames = 24
  assert "over 'context'" not in "\n".join(aot.levers(report, config))


def test_levers_accumulate_gradients_before_shrinking_the_train_batch():
  from experiments.configs import base  # pylint: disable=g-import-not-at-top
  report = _v5e_256_over_hbm(global_batch_size=1024)
  config = base.get_config()
  text = "\n".join(aot.levers(report, config))
  assert ("--config.optim.grad_accum_steps=2 (the global batch of 1024 stays; now 4 clips per "
          "device per pass") in text
  assert "halve the batch" not in text
  report.grad_accum_steps = 2
  assert "--config.optim.grad_accum_steps=4 (the global batch of 1024 stays; now 2 clips" in (
      "\n".join(aot.levers(report, config)))
  report.what = "sample"  # sampling has no gradients: a smaller batch per call
  assert "--sample_batch=512 (now 1024, 4 per data-parallel device" in "\n".join(
      aot.levers(report, config))


def _text_config(**overrides):
  from stunet.text import config as text_config_lib  # pylint: disable=g-import-not-at-top
  c = text_config_lib.text_config()
  c.update(overrides)
  return c


def test_shape_only_t5_encoder_has_the_architecture_shapes():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  c = _text_config(kind="t5", width=512, max_length=16)
  tokenizer, module = aot.shape_only_text_encoder(c, "t5-v1_1-small")
  assert tokenizer.max_length == 16
  ids, mask = jnp.zeros((2, 16), jnp.int32), jnp.ones((2, 16), bool)
  params = jax.eval_shape(module.init, jax.random.key(0), ids, mask)
  out = jax.eval_shape(module.apply, params, ids, mask)
  assert out.shape == (2, 16, 512)
  count = sum(x.size for x in jax.tree.leaves(params))
  assert 35e6 < count < 36e6  # HF t5-v1_1-small's encoder: 35.3M parameters
  with pytest.raises(RuntimeError, match="shape-only"):
    tokenizer(["a caption"])


def test_shape_only_t5_encoder_only_replaces_a_missing_t5():
  assert aot.shape_only_text_encoder(_text_config(), "t5-v1_1-xxl") is None
  assert aot.shape_only_text_encoder(_text_config(kind="t5", t5_dir="/some/t5"),
                                     "t5-v1_1-xxl") is None
  with pytest.raises(ValueError, match="--t5_architecture='t5-huge'"):
    aot.shape_only_text_encoder(_text_config(kind="t5", width=4096), "t5-huge")
  with pytest.raises(ValueError, match="text.width=256"):
    aot.shape_only_text_encoder(_text_config(kind="t5", width=256), "t5-v1_1-xxl")


def test_levers_name_the_remat_policy_that_saves_least():
  from experiments.configs import base  # pylint: disable=g-import-not-at-top
  report = _v5e_256_over_hbm(global_batch_size=256)
  config = base.get_config()
  assert "remat_policy" not in "\n".join(aot.levers(report, config))  # 'full' already
  config.model.remat_policy = "dots"
  assert "--config.model.remat_policy=full (now 'dots'" in "\n".join(aot.levers(report, config))
  report.what = "sample"  # no backward pass: remat does not apply
  assert "remat_policy" not in "\n".join(aot.levers(report, config))
