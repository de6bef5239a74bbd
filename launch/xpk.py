#!/usr/bin/env python3
r"""Runs the stunet training job on a GKE TPU cluster through xpk.

xpk (github.com/AI-Hypercomputer/xpk, `pip install xpk`) creates GKE clusters with TPU node
pools and runs one container per TPU host; `jax.distributed.initialize()` (our `--multihost`)
finds its peers there without further arguments, across slices too. `--dry-run` prints the
commands (one per line, shell-quoted) instead of running them; otherwise they run in order and
the first failure stops the script, naming the failed command.

Subcommands (each takes --project, --zone and --cluster):
  cluster-create  `xpk cluster create` with --tpu-type / --num-slices (--spot or --reservation)
  workload        `xpk workload create` running `python3 -m experiments.train ... --multihost`
  delete          `xpk workload delete` of --workload
  cluster-delete  `xpk cluster delete`

The container: either --docker-image, an image holding this repository as its working directory
with `pip install '.[tpu]'` done, or --base-docker-image (e.g. python:3.12), which xpk extends
with this checkout (--script-dir, the repo root) and where the job installs '.[tpu]' before
training.

Worked example, two v5e slices of 16 chips:
  python launch/xpk.py cluster-create --project=my-project --zone=us-west4-a \
      --cluster=stunet --tpu-type=v5litepod-16 --num-slices=2 --spot
  python launch/xpk.py workload --project=my-project --zone=us-west4-a --cluster=stunet \
      --workload=base-v5e --tpu-type=v5litepod-16 --num-slices=2 \
      --base-docker-image=python:3.12 \
      --config=experiments/configs/base.py --workdir=gs://my-bucket/runs/base-v5e \
      --config.data.data_dir=gs://my-bucket/tensorflow_datasets

`--config.*` arguments after the subcommand are passed through to experiments/train.py.
"""

import argparse
import os
import re
import shlex
import sys

import cli_errors  # launch/ is on sys.path when run as a script
from command_runner import LaunchError
from command_runner import run_commands

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TPU_TYPE_RE = re.compile(r"^(v4|v5litepod|v5p|v6e)-\d+$")


def _xpk(args, *command):
  return [args.xpk, *command, f"--project={args.project}", f"--zone={args.zone}",
          f"--cluster={args.cluster}"]


def train_command_line(args):
  """The command every TPU host's container runs."""
  train = shlex.join(["python3", "-m", "experiments.train", f"--config={args.config}",
                      f"--workdir={args.workdir}", "--multihost", *args.overrides])
  if args.base_docker_image:
    return f"python3 -m pip install -e '.[tpu]' && {train}"
  return train


def cluster_create_commands(args):
  cmd = [*_xpk(args, "cluster", "create"), f"--tpu-type={args.tpu_type}",
         f"--num-slices={args.num_slices}"]
  if args.spot:
    cmd.append("--spot")
  elif args.reservation:
    cmd.append(f"--reservation={args.reservation}")
  else:
    cmd.append("--on-demand")
  return [cmd]


def workload_commands(args):
  cmd = [*_xpk(args, "workload", "create"), f"--workload={args.workload}",
         f"--tpu-type={args.tpu_type}", f"--num-slices={args.num_slices}"]
  if args.docker_image:
    cmd.append(f"--docker-image={args.docker_image}")
  else:
    cmd += [f"--base-docker-image={args.base_docker_image}", f"--script-dir={_REPO_ROOT}"]
  cmd.append(f"--command={train_command_line(args)}")
  return [cmd]


def delete_commands(args):
  return [[*_xpk(args, "workload", "delete"), f"--workload={args.workload}"]]


def cluster_delete_commands(args):
  return [_xpk(args, "cluster", "delete")]


def _add_common(parser):
  parser.add_argument("--project", required=True, help="Google Cloud project.")
  parser.add_argument("--zone", required=True, help="Zone of the cluster's TPUs.")
  parser.add_argument("--cluster", required=True, help="GKE cluster name.")
  parser.add_argument("--xpk", default="xpk", help="xpk executable.")
  parser.add_argument("--dry-run", "--dry_run", action="store_true",
                      help="Print the commands, one per line, without running them.")


def _add_slices(parser):
  parser.add_argument("--tpu-type", required=True,
                      help="v4-N, v5litepod-N (v5e), v5p-N or v6e-N, e.g. v5litepod-16.")
  parser.add_argument("--num-slices", type=int, default=1, help="Number of TPU slices.")


def build_parser():
  parser = cli_errors.ArgumentParser(
      prog="xpk.py", description=__doc__, allow_abbrev=False,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

  def add(name, help_text):
    p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
    _add_common(p)
    return p

  p = add("cluster-create", "Create a GKE cluster with TPU node pools.")
  _add_slices(p)
  capacity = p.add_mutually_exclusive_group()
  capacity.add_argument("--spot", action="store_true", help="Spot capacity.")
  capacity.add_argument("--reservation", default=None, help="Reservation to use.")
  p = add("workload", "Run training (extra --config.x=y are passed through).")
  p.add_argument("--workload", required=True, help="Workload (job) name.")
  _add_slices(p)
  image = p.add_mutually_exclusive_group(required=True)
  image.add_argument("--docker-image", default=None,
                     help="Image with the repo as working directory and '.[tpu]' installed.")
  image.add_argument("--base-docker-image", default=None,
                     help="Base image that xpk extends with this checkout.")
  p.add_argument("--config", required=True,
                 help="Config file relative to the repo, e.g. experiments/configs/base.py.")
  p.add_argument("--workdir", required=True, help="gs:// run directory shared by all hosts.")
  p = add("delete", "Delete a workload.")
  p.add_argument("--workload", required=True, help="Workload (job) name.")
  add("cluster-delete", "Delete the cluster.")
  return parser


_COMMANDS = {
    "cluster-create": cluster_create_commands,
    "workload": workload_commands,
    "delete": delete_commands,
    "cluster-delete": cluster_delete_commands,
}


def parse_args(argv):
  """Parses argv; `--config.x=y` arguments become args.overrides (workload only)."""
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  sub = parser._subparsers._group_actions[0].choices[args.subcommand]  # pylint: disable=protected-access
  takes_overrides = args.subcommand == "workload"
  bad = [a for a in extra if not (takes_overrides and a.startswith("--config."))]
  if bad:
    sub.error(f"unrecognized arguments: {' '.join(bad)}" +
              (" (only --config.x=y overrides are passed through)" if takes_overrides else ""))
  args.overrides = extra
  if takes_overrides and not args.workdir.startswith("gs://"):
    sub.error(f"--workdir={args.workdir!r}: must be a gs:// path that all hosts share")
  tpu_type = getattr(args, "tpu_type", None)
  if tpu_type is not None and not _TPU_TYPE_RE.match(tpu_type):
    sub.error(f"--tpu-type={tpu_type!r}: expected v4-N, v5litepod-N, v5p-N or v6e-N")
  if getattr(args, "num_slices", 1) < 1:
    sub.error(f"--num-slices={args.num_slices}: must be at least 1")
  return args


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    run_commands(_COMMANDS[args.subcommand](args), args.dry_run)
  except LaunchError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(cli_errors.run(main))
