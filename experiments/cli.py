"""What every experiment script does once its flags are parsed, before JAX starts.

  _CPU_DEVICES = cli.define_cpu_devices()
  def main(argv):
    cli.init(_CPU_DEVICES.value)
"""

from absl import flags
from absl import logging


def define_cpu_devices(purpose: str = "local testing of sharding") -> flags.FlagHolder:
  """The `--cpu_devices` flag: simulate N CPU devices (a local mesh); 0 = the real devices."""
  return flags.DEFINE_integer("cpu_devices", 0,
                              f"Simulate this many CPU devices ({purpose}); 0 = off.")


def init(cpu_devices: int) -> None:
  """Quiet logs unless `--verbosity` was given, and the simulated CPU devices if asked for.

  Must run after flag parsing and before anything initialises JAX's backends: the device count
  is fixed when the first backend starts.
  """
  if not flags.FLAGS["verbosity"].present:
    # orbax logs every checkpoint file operation at INFO; --verbosity=0 shows them.
    logging.set_verbosity(logging.WARNING)
  if cpu_devices:
    import jax  # pylint: disable=import-outside-toplevel
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", cpu_devices)
