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
