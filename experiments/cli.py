"""What every experiment script shares: bad input as one line, and the set-up before JAX starts.

  _CPU_DEVICES = cli.define_cpu_devices()
  def main(argv):
    cli.init(_CPU_DEVICES.value)
  if __name__ == "__main__":
    cli.run(main)

`run` is `absl.app.run` with one contract for user errors, wherever they surface: a bad flag
or config override (absl parses `--config` and loads the config file before `main` runs), a
config file that does not load, a `ValueError` from config validation, a missing input file.
Each prints one line, `error: <message>`, to stderr and exits with status 2 (the usual status
for bad usage); any other exception is a program bug and keeps its traceback.
`--verbosity=1` shows the traceback of a user error too.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, NoReturn, Sequence

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
# The parser class is not re-exported by the package; it tells config-file flags apart.
from ml_collections.config_flags import config_flags as config_flags_lib

USAGE_EXIT_CODE = 2

# Raised by validation (ValueError, which ConfigMismatchError extends), absl for bad usage, and
# the file system for paths the user gave. Broad on purpose: every entry point's work is driven
# by its flags, so these name something the user can fix; `--verbosity=1` keeps the traceback
# for the rare program bug among them.
USER_ERRORS = (ValueError, app.UsageError, flags.Error, FileNotFoundError, NotADirectoryError,
               IsADirectoryError, PermissionError, FileExistsError)


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


def one_line(message: str) -> str:
  """`message` on one line: a line ending in ':' runs into the next, others join with '; '."""
  out = ""
  for line in (l.strip() for l in str(message).splitlines()):
    if line:
      out += (line if not out else (" " if out.endswith(":") else "; ") + line)
  return out


def fail(message: str) -> NoReturn:
  """Prints `error: <message>` as one line to stderr and exits with status 2."""
  sys.stderr.write(f"error: {one_line(message)}\n")
  sys.stderr.flush()
  raise SystemExit(USAGE_EXIT_CODE)


def run(main: Callable[[list[str]], Any]) -> None:
  """`app.run(main)`, with user errors (module doc) as one line and exit status 2."""
  app.run(_guarded(main), flags_parser=parse_flags)


def _show_tracebacks() -> bool:
  return flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present and \
      flags.FLAGS.verbosity >= 1


def _guarded(main: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
  def guarded(argv):
    try:
      return main(argv)
    except USER_ERRORS as e:
      if _show_tracebacks():
        raise
      fail(str(e) or type(e).__name__)
  return guarded


def parse_flags(argv: Sequence[str]) -> list[str]:
  """`app.run`'s flag parser: absl's, with every user error as one line (see `run`)."""
  try:
    rest = flags.FLAGS(list(argv))
  except (flags.Error, AttributeError, KeyError, OSError) as e:
    if (message := _parse_error_message(e, argv)) is None:
      raise
    fail(message)
  if (message := _config_load_error(argv)) is not None:
    fail(message)
  return rest


def define_config_file(name: str, default: str | None, help_string: str,
                       **kwargs) -> flags.FlagHolder:
  """`config_flags.DEFINE_config_file`, with a bad override of its default as one line.

  A default config file is loaded when the flag is defined, at import, together with the
  `--<name>.field=value` overrides on the command line: a misspelled field fails there,
  before `app.run` parses anything.
  """
  try:
    return config_flags.DEFINE_config_file(name, default, help_string, **kwargs)
  except (flags.Error, AttributeError, KeyError, OSError) as e:
    if (message := _parse_error_message(e, sys.argv)) is None:
      raise
    fail(message)


def _parse_error_message(e: Exception, argv: Sequence[str]) -> str | None:
  """The one-line message of a user error raised while parsing flags, else None (a bug)."""
  if isinstance(e, flags.Error):
    return _flag_error_message(str(e))
  if isinstance(e, OSError):
    # An override was applied to a config file that did not load (see `_config_load_error`).
    return _config_load_error(argv, failed=True)
  missing = _missing_config_field(e)
  return None if missing is None else _missing_field_message(missing, argv)


def _flag_error_message(message: str) -> str:
  # config_flags puts get_config's whole traceback into the message (b/63877430); its last
  # line is the error itself.
  if "Error whilst parsing config file" in message:
    lines = [l for l in message.splitlines() if l.strip()]
    return f"{lines[0].split(' Error whilst parsing')[0].rstrip(':')}: {lines[-1].strip()}"
  return message


def _missing_config_field(e: Exception) -> tuple[str, str | None] | None:
  """(field, suggestion) of a config override naming no field, else None.

  ConfigDict raises `AttributeError(KeyError("'name'\\nDid you mean ..."))` for a missing
  field; config_flags lets it escape from flag parsing.
  """
  key_error = e if isinstance(e, KeyError) else (e.args[0] if e.args else None)
  if not isinstance(key_error, KeyError) or not key_error.args:
    return None
  text = str(key_error.args[0])
  match = re.match(r"'([^'\n]+)'", text)
  if match is None:
    return None
  suggestion = re.search(r'Did you mean "([^"]+)"', text)
  return match.group(1), suggestion.group(1) if suggestion else None


def _missing_field_message(missing: tuple[str, str | None], argv: Sequence[str]) -> str:
  field, suggestion = missing
  hint = f"; did you mean {suggestion!r}?" if suggestion else ""
  for arg in argv[1:]:
    match = re.match(r"--?(?:no)?(\w+)\.([\w.]+)", arg)
    if match and field in match.group(2).split("."):
      path = match.group(2).split(".")
      parent = ".".join([match.group(1)] + path[:path.index(field)])
      return f"{arg.split('=', 1)[0]}: {parent} has no field {field!r}{hint}"
  return f"the config has no field {field!r}{hint}"


def _config_load_error(argv: Sequence[str], failed: bool = False) -> str | None:
  """The one-line error of a `--config`-style flag whose file did not load, else None.

  config_flags does not fail when the file is missing: it stores a stand-in that raises
  OSError on first use, which would be inside `main`, after a traceback's worth of start-up.
  `failed`: flag parsing already raised that OSError (an override touched the stand-in).
  """
  for name in flags.FLAGS:
    flag = flags.FLAGS[name]
    if not isinstance(flag.parser, config_flags_lib.ConfigFileFlagParser):
      continue
    path = _config_path(name, flag, argv)
    if path is None:
      continue
    if not os.path.exists(path):
      return f"--{name}: config file {path} does not exist"
    if failed:
      continue
    try:
      getattr(flag.value, "keys", None)
    except OSError as e:
      cause = e.__cause__ or e
      return f"--{name}: cannot load config file {path}: {str(cause).splitlines()[-1].strip()}"
  return None


def _config_path(name: str, flag: flags.Flag, argv: Sequence[str]) -> str | None:
  """The file a config flag loads: its last value on the command line, else its default."""
  value = None
  args = list(argv[1:])
  for i, arg in enumerate(args):
    if arg in (f"--{name}", f"-{name}") and i + 1 < len(args):
      value = args[i + 1]
    elif arg.startswith((f"--{name}=", f"-{name}=")):
      value = arg.split("=", 1)[1]
  if value is None:
    if flag.value is None:  # an optional config that was not given
      return None
    # Parsing replaced the default with the loaded config; the file name stays in the help.
    value = str(getattr(flag, "default_as_str", "") or "").strip("'") or None
  return value.split(":", 1)[0] if value else None
