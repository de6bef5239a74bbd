"""Mesh construction from `config.mesh` and logical-axis -> NamedSharding conversion."""

import jax
from jax.sharding import PartitionSpec as P
import ml_collections
import pytest

from stunet.parallel import mesh as mesh_lib
from stunet.parallel import sharding as sharding_lib
from stunet.train import config as train_config

RULES = train_config.mesh_config().rules


def _mesh_config(shape):
  c = train_config.mesh_config()
  c.shape = shape
  return c


def test_fill_axis_takes_remaining_devices():
  assert mesh_lib.resolve_shape((1, -1, 1), 8) == (1, 8, 1)
  assert mesh_lib.resolve_shape((2, -1, 1), 8) == (2, 4, 1)
  mesh = mesh_lib.make_mesh(_mesh_config((2, -1, 1)))
  assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}
  assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


@pytest.mark.parametrize("shape, message", [
    ((-1, -1, 1), "at most one -1"),
    ((3, -1, 1), "not divisible by the fixed axes' product 3"),
    ((2, 2, 1), "needs 4 devices, but 8 are available"),
    ((0, 8, 1), "positive or -1"),
])
def test_bad_shapes_are_refused(shape, message):
  with pytest.raises(ValueError, match="mesh.shape"):
    mesh_lib.resolve_shape(shape, 8)
  with pytest.raises(ValueError, match=message):
    mesh_lib.resolve_shape(shape, 8)


def test_mesh_axes_and_shape_must_agree():
  c = ml_collections.ConfigDict({"axes": ("data", "fsdp"), "shape": (1, -1, 1)})
  with pytest.raises(ValueError, match="one entry per axis of mesh.axes"):
    mesh_lib.make_mesh(c)


@pytest.mark.parametrize("axes", [
    ("data", "fsdp", "context", "tensor"),
    ("(data,fsdp,context,tensor)",),  # how --config.mesh.axes='(data,fsdp,context,tensor)' arrives
    "data, fsdp, context, tensor",
    ("('data', 'fsdp', 'context', 'tensor')",),
])
def test_mesh_axes_from_the_command_line(axes):
  assert mesh_lib.resolve_axes(axes) == ("data", "fsdp", "context", "tensor")
  c = ml_collections.ConfigDict({"axes": axes, "shape": (1, 2, 4, 1)})
  assert dict(mesh_lib.make_mesh(c).shape) == {"data": 1, "fsdp": 2, "context": 4, "tensor": 1}


def test_bad_mesh_axes_are_named():
  with pytest.raises(ValueError, match=r"mesh.axes=.*must be mesh axis names"):
    mesh_lib.resolve_axes(("data", "fs dp"))


def test_specs_follow_rules_and_replicate_indivisible_dims():
  mesh = mesh_lib.make_mesh(_mesh_config((2, 4, 1)))
  # conv kernel (kh, kw, in, out): out channels over fsdp when divisible ...
  assert sharding_lib.mesh_spec((None, None, "conv_in", "conv_out"), (3, 3, 16, 32), mesh,
                                RULES) == P(None, None, None, "fsdp")
  # ... replicated when not (3 RGB output channels over fsdp=4).
  assert sharding_lib.mesh_spec((None, None, "conv_in", "conv_out"), (3, 3, 16, 3), mesh,
                                RULES) == P(None, None, None, None)
  # Size-1 mesh axes (tensor) shard nothing and are left out.
  assert sharding_lib.mesh_spec(("embed", "mlp"), (32, 64), mesh, RULES) == P("fsdp", None)
  # A mesh axis is used once per array: the second 'embed' dim stays replicated.
  assert sharding_lib.mesh_spec(("embed", "embed"), (32, 32), mesh, RULES) == P("fsdp", None)
  # A multi-axis rule drops trailing axes until the dim divides.
  assert sharding_lib.mesh_spec(("activation_batch",), (8,), mesh, RULES) == P(("data", "fsdp"))
  assert sharding_lib.mesh_spec(("activation_batch",), (2,), mesh, RULES) == P("data")


def test_logical_names_must_match_rank():
  mesh = mesh_lib.make_mesh(_mesh_config((1, -1, 1)))
  with pytest.raises(ValueError, match="do not match shape"):
    sharding_lib.mesh_spec(("embed",), (4, 4), mesh, RULES)


def test_dcn_shape_defaults_to_slices_along_the_first_axis():
  assert mesh_lib.resolve_dcn_shape((), (4, 8, 1), 2) == (2, 1, 1)
  assert mesh_lib.resolve_dcn_shape((1, 2, 1), (4, 8, 1), 2) == (1, 2, 1)


@pytest.mark.parametrize("dcn, message", [
    ((2, 1), r"mesh.dcn_shape=\(2, 1\) needs one entry per axis"),
    ((0, 2, 1), r"mesh.dcn_shape=\(0, 2, 1\) entries must be positive"),
    ((4, 1, 1), r"mesh.dcn_shape=\(4, 1, 1\) spans 4 slices, but the devices come from 2"),
    ((1, 1, 2), r"mesh.dcn_shape=\(1, 1, 2\): axis 2 has 1 devices"),
])
def test_bad_dcn_shape_is_named(dcn, message):
  with pytest.raises(ValueError, match=message):
    mesh_lib.resolve_dcn_shape(dcn, (4, 8, 1), 2)


def test_dcn_shape_over_one_slice_is_refused():
  c = _mesh_config((1, -1, 1))
  c.dcn_shape = (2, 1, 1)
  with pytest.raises(ValueError, match=r"mesh.dcn_shape=\(2, 1, 1\) spans 2 slices, but the "
                     "devices come from one slice"):
    mesh_lib.make_mesh(c)
  c.dcn_shape = (1, 1, 1)
  assert dict(mesh_lib.make_mesh(c).shape) == {"data": 1, "fsdp": 8, "tensor": 1}


def test_rules_from_a_json_round_trip_are_hashable_pairs():
  import json
  config_rules = train_config.mesh_config().rules
  rules = sharding_lib.as_rules(json.loads(json.dumps(config_rules)))
  assert rules == sharding_lib.as_rules(config_rules)
  hash(rules)  # jit closures and caches key on them
  assert dict(rules)["activation_batch"] == ("data", "fsdp")
  with pytest.raises(ValueError, match="mesh.rules entries must be"):
    sharding_lib.as_rules([["embed", "fsdp", "tensor"]])


def _abstract(shapes, specs, mesh):
  from jax.sharding import NamedSharding
  params = {k: jax.ShapeDtypeStruct(s, "float32") for k, s in shapes.items()}
  shardings = {k: NamedSharding(mesh, specs[k]) for k in shapes}
  return params, shardings


def test_sharding_report_measures_the_excess_over_perfect_sharding():
  mesh = mesh_lib.make_mesh(_mesh_config((1, 4, 2)))
  params, shardings = _abstract({"kernel": (64, 32)}, {"kernel": P("fsdp", "tensor")}, mesh)
  report = sharding_lib.sharding_report(params, shardings, mesh)
  assert (report.total, report.per_device, report.ways) == (2048, 256, 8)
  assert report.excess == 0 and report.largest_replicated == ()
  # A replicated leaf of the same size: one device holds 256 + 2048 of an ideal 512.
  params, shardings = _abstract({"kernel": (64, 32), "table": (2048,)},
                                {"kernel": P("fsdp", "tensor"), "table": P()}, mesh)
  report = sharding_lib.sharding_report(params, shardings, mesh)
  assert report.per_device == 256 + 2048
  assert report.excess == pytest.approx((256 + 2048) / 512 - 1)
  assert report.largest_replicated == (("['table']", 2048),)
  with pytest.raises(ValueError, match=r"not sufficiently sharded: .*\['table'\] \(2,048\)"
                     r".*mesh.max_param_excess \(now 0.1\)"):
    sharding_lib.check_sufficiently_sharded(params, shardings, mesh, 0.1)
  assert sharding_lib.check_sufficiently_sharded(params, shardings, mesh, 4.0) == report


def test_a_mesh_without_parameter_axes_is_never_in_excess():
  mesh = mesh_lib.make_mesh(_mesh_config((8, 1, 1)))
  params, shardings = _abstract({"table": (100,)}, {"table": P()}, mesh)
  report = sharding_lib.sharding_report(params, shardings, mesh)
  assert report.ways == 1 and report.excess == 0 and report.largest_replicated == ()


def test_the_stage_check_warns_raises_or_stays_off(caplog):
  from stunet.train import loop
  mesh = mesh_lib.make_mesh(_mesh_config((1, 8, 1)))
  params, shardings = _abstract({"norm": (10,)}, {"norm": P()}, mesh)
  c = train_config.mesh_config()
  c.param_sharding_check = "error"
  with pytest.raises(ValueError, match="not sufficiently sharded"):
    loop.check_param_sharding(c, params, shardings, mesh)
  c.param_sharding_check = "warn"
  with caplog.at_level("WARNING"):
    loop.check_param_sharding(c, params, shardings, mesh)
  assert "not sufficiently sharded" in caplog.text and "['norm'] (10)" in caplog.text
  c.param_sharding_check = "off"
  caplog.clear()
  loop.check_param_sharding(c, params, shardings, mesh)
  assert "sufficiently" not in caplog.text


def test_bad_sharding_check_fields_are_named():
  from stunet import config as config_lib
  c = config_lib.default_config("tiny")
  c.mesh.param_sharding_check = "loud"
  with pytest.raises(ValueError, match="mesh.param_sharding_check must be one of"):
    train_config.validate(c)
  c.mesh.param_sharding_check = "warn"
  c.mesh.max_param_excess = -1.0
  with pytest.raises(ValueError, match="mesh.max_param_excess must be a number >= 0"):
    train_config.validate(c)
