"""Runs (or, for --dry-run, prints) a launcher's shell commands in order; shared by launch/*.py."""

import shlex
import subprocess
import sys


class LaunchError(Exception):
  """A command failed or an argument is inconsistent."""


def run_commands(commands, dry_run, out=sys.stdout):
  """Prints (dry run) or runs the commands in order; raises LaunchError on the first failure."""
  for cmd in commands:
    line = shlex.join(cmd)
    if dry_run:
      print(line, file=out)
      continue
    print(f"+ {line}", file=out, flush=True)
    try:
      result = subprocess.run(cmd, check=False)
    except FileNotFoundError as e:
      raise LaunchError(f"{cmd[0]} not found ({e}); command: {line}") from None
    if result.returncode != 0:
      raise LaunchError(f"command failed with exit status {result.returncode}: {line}")
