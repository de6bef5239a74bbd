"""Bad input to a launcher as one line, `error: <message>`, and exit status 2.

The same contract as `experiments/cli.py` (which these scripts cannot import: they run as
plain scripts, without the package on the path): an argparse usage error or a `ValueError`
from checking the arguments prints one line to stderr and exits 2; a failed command
(`command_runner.LaunchError`) is reported by the launcher itself with status 1; anything
else is a bug and keeps its traceback.
"""

import argparse
import sys

USAGE_EXIT_CODE = 2


def one_line(message) -> str:
  """`message` on one line: a line ending in ':' runs into the next, others join with '; '."""
  out = ""
  for line in (l.strip() for l in str(message).splitlines()):
    if line:
      out += (line if not out else (" " if out.endswith(":") else "; ") + line)
  return out


def fail(message) -> None:
  sys.stderr.write(f"error: {one_line(message)}\n")
  sys.stderr.flush()
  sys.exit(USAGE_EXIT_CODE)


class ArgumentParser(argparse.ArgumentParser):
  """argparse without the usage block on errors: one line naming the subcommand and flag.

  Subparsers made by `add_subparsers` are of this class too (argparse uses the parent's).
  """

  def error(self, message):
    fail(f"{self.prog}: {message}")


def run(main) -> int:
  """`main()`'s exit status; a ValueError or FileNotFoundError from it is one line, status 2."""
  try:
    return main()
  except (ValueError, FileNotFoundError) as e:
    fail(str(e))
