#!/usr/bin/env python3
r"""Creates a Cloud TPU VM slice, installs stunet on every worker, trains, collects logs, deletes.

Every step is a `gcloud compute tpus ...` command; `--dry-run` prints them (one per line,
shell-quoted) instead of running them. Without it they run in order and the first failure stops
the script, naming the command that failed.

Subcommands (each takes --project, --zone and --name):
  create        create the slice: `tpu-vm create`, or with --queued `queued-resources create`
                and wait until the queued resource is ACTIVE
  setup         `git archive` this checkout into a tarball, scp it to all workers, pip install
                '.[tpu]' there
  train         start the same `python3 -m experiments.train ... --multihost` on all workers,
                under nohup, with its log in ~/stunet-train.log on each worker
  logs          follow the logs of all workers (each line prefixed by the worker's hostname)
  collect-logs  copy each worker's log back to --log-dir/worker-<i>.log
  delete        delete the slice (`tpu-vm delete`, or `queued-resources delete --force`)
  up            create + setup + train

Runtime versions default by TPU generation (override with --runtime-version):
  v4: tpu-ubuntu2204-base, v5e (v5litepod-N): v2-alpha-tpuv5-lite, v5p: v2-alpha-tpuv5,
  v6e: v2-alpha-tpuv6e.

Worked example, a v5e slice with 16 chips (4 workers):
  python launch/tpu_vm.py up --project=my-project --zone=us-west4-a --name=stunet-v5e \
      --accelerator-type=v5litepod-16 --spot \
      --config=experiments/configs/base.py --workdir=gs://my-bucket/runs/base-v5e \
      --config.mesh.shape='(-1,4,1)'
  python launch/tpu_vm.py logs --project=my-project --zone=us-west4-a --name=stunet-v5e
  python launch/tpu_vm.py delete --project=my-project --zone=us-west4-a --name=stunet-v5e

`--config.*` arguments after the subcommand are passed through to experiments/train.py. The
workdir must be a gs:// path: every worker reads and writes the same checkpoints (orbax and
TFDS read gs:// directly; the TPU VM's service account needs access to the bucket).
"""

import argparse
import os
import re
import shlex
import sys
import tempfile

import cli_errors  # launch/ is on sys.path when run as a script
from command_runner import LaunchError
from command_runner import run_commands

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REMOTE_DIR = "stunet"  # on every worker, relative to the home directory
_REMOTE_TARBALL = "stunet-src.tar.gz"
_REMOTE_LOG = "stunet-train.log"

# Default runtime (software) versions per TPU generation, from the Cloud TPU docs.
RUNTIME_VERSIONS = {
    "v4": "tpu-ubuntu2204-base",
    "v5litepod": "v2-alpha-tpuv5-lite",
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",
}

_ACCELERATOR_RE = re.compile(r"^(v4|v5litepod|v5p|v6e)-(\d+)$")


def parse_accelerator_type(accelerator_type):
  """Returns (generation, size) of e.g. 'v5litepod-16' -> ('v5litepod', 16)."""
  match = _ACCELERATOR_RE.match(accelerator_type)
  if not match:
    raise ValueError(
        f"--accelerator-type={accelerator_type!r}: expected v4-N, v5litepod-N, v5p-N or v6e-N")
  return match.group(1), int(match.group(2))


def num_workers(accelerator_type):
  """Number of TPU VM hosts of a slice.

  v5e/v6e names count chips (single host up to 8 chips, then 4 chips per host); v4/v5p names
  count TensorCores (2 per chip, 4 chips per host).
  """
  generation, size = parse_accelerator_type(accelerator_type)
  if generation in ("v5litepod", "v6e"):
    return 1 if size <= 8 else size // 4
  return max(1, size // 8)


def _gcloud_tpu(args, *command):
  return ["gcloud", "compute", "tpus", *command, f"--project={args.project}",
          f"--zone={args.zone}"]


def _ssh_all(args, remote_command):
  return [*_gcloud_tpu(args, "tpu-vm", "ssh", args.name), "--worker=all",
          f"--command={remote_command}"]


def create_commands(args):
  """The command that creates the slice (directly or as a queued resource)."""
  generation, _ = parse_accelerator_type(args.accelerator_type)
  version = args.runtime_version or RUNTIME_VERSIONS[generation]
  if args.queued:
    cmd = [*_gcloud_tpu(args, "queued-resources", "create", args.name),
           f"--node-id={args.name}", f"--accelerator-type={args.accelerator_type}",
           f"--runtime-version={version}"]
  else:
    cmd = [*_gcloud_tpu(args, "tpu-vm", "create", args.name),
           f"--accelerator-type={args.accelerator_type}", f"--version={version}"]
  if args.spot:
    cmd.append("--spot")
  if args.preemptible:
    if args.queued:
      raise ValueError("--preemptible is not available with --queued; use --spot")
    cmd.append("--preemptible")
  if args.reserved:
    cmd.append("--reserved")
  if not args.queued:
    return [cmd]  # `tpu-vm create` returns once the slice is READY
  # A queued resource is granted later: wait for ACTIVE so the next steps can reach the workers.
  state = shlex.join([*_gcloud_tpu(args, "queued-resources", "describe", args.name),
                      "--format=value(state.state)"])
  wait = (f'while true; do s="$({state})"; echo "queued resource {args.name}: $s"; '
          'case "$s" in ACTIVE) exit 0;; FAILED|SUSPENDED) exit 1;; esac; sleep 60; done')
  return [cmd, ["bash", "-c", wait]]


def setup_commands(args):
  """Archives the checkout, copies it to all workers and installs it with the tpu extra."""
  tarball = args.tarball or os.path.join(tempfile.gettempdir(), f"{args.name}-src.tar.gz")
  install = (f"rm -rf {_REMOTE_DIR} && mkdir {_REMOTE_DIR} && "
             f"tar xzf {_REMOTE_TARBALL} -C {_REMOTE_DIR} && cd {_REMOTE_DIR} && "
             "python3 -m pip install --upgrade pip && python3 -m pip install -e '.[tpu]'")
  return [
      ["git", "-C", _REPO_ROOT, "archive", "--format=tar.gz", f"--output={tarball}",
       args.git_ref],
      [*_gcloud_tpu(args, "tpu-vm", "scp", tarball, f"{args.name}:{_REMOTE_TARBALL}"),
       "--worker=all"],
      _ssh_all(args, install),
  ]


def train_command_line(args):
  """The command every worker runs (the same on all of them)."""
  return ["python3", "-m", "experiments.train", f"--config={args.config}",
          f"--workdir={args.workdir}", "--multihost", *args.overrides]


def train_commands(args):
  """Starts training on all workers in the background, logging to ~/stunet-train.log."""
  train = shlex.join(train_command_line(args))
  # nohup and closed stdin: the run outlives the ssh session; one log file on each worker.
  remote = f"cd {_REMOTE_DIR} && nohup {train} > ~/{_REMOTE_LOG} 2>&1 < /dev/null &"
  return [_ssh_all(args, remote)]


def logs_commands(args):
  prefix = "sed -u \"s/^/[$(hostname)] /\""
  return [_ssh_all(args, f"tail -n +1 -F ~/{_REMOTE_LOG} | {prefix}")]


def collect_logs_commands(args):
  count = args.num_workers or num_workers(args.accelerator_type)
  commands = [["mkdir", "-p", args.log_dir]]
  for worker in range(count):
    commands.append([
        *_gcloud_tpu(args, "tpu-vm", "scp", f"{args.name}:{_REMOTE_LOG}",
                     os.path.join(args.log_dir, f"worker-{worker}.log")),
        f"--worker={worker}"])
  return commands


def delete_commands(args):
  if args.queued:
    # --force deletes the TPU node together with its queued resource.
    return [[*_gcloud_tpu(args, "queued-resources", "delete", args.name), "--force",
             "--quiet"]]
  return [[*_gcloud_tpu(args, "tpu-vm", "delete", args.name), "--quiet"]]


def up_commands(args):
  return create_commands(args) + setup_commands(args) + train_commands(args)


def _add_common(parser):
  parser.add_argument("--project", required=True, help="Google Cloud project.")
  parser.add_argument("--zone", required=True, help="Zone of the TPU, e.g. us-west4-a.")
  parser.add_argument("--name", required=True,
                      help="TPU name (also the queued-resource id with --queued).")
  parser.add_argument("--dry-run", "--dry_run", action="store_true",
                      help="Print the commands, one per line, without running them.")


def _add_accelerator(parser, required=True):
  parser.add_argument("--accelerator-type", required=required,
                      help="v4-N, v5litepod-N (v5e), v5p-N or v6e-N, e.g. v5litepod-16, v5p-32.")


def _add_create(parser):
  parser.add_argument("--runtime-version", default=None,
                      help="TPU software version; default by generation: " +
                      ", ".join(f"{k}: {v}" for k, v in RUNTIME_VERSIONS.items()) + ".")
  parser.add_argument("--queued", action="store_true",
                      help="Request the slice as a queued resource (waits for capacity).")
  parser.add_argument("--spot", action="store_true", help="Spot capacity.")
  parser.add_argument("--preemptible", action="store_true",
                      help="Preemptible capacity (not with --queued).")
  parser.add_argument("--reserved", action="store_true", help="Use the project's reservation.")


def _add_setup(parser):
  parser.add_argument("--git-ref", default="HEAD",
                      help="Commit archived and installed (uncommitted changes are not sent).")
  parser.add_argument("--tarball", default=None,
                      help="Local path of the source tarball (default: temp dir).")


def _add_train(parser):
  parser.add_argument("--config", required=True,
                      help="Config file relative to the repo, e.g. experiments/configs/base.py "
                      "(a variant as base.py:tiny).")
  parser.add_argument("--workdir", required=True,
                      help="gs:// run directory shared by all workers.")


def build_parser():
  parser = cli_errors.ArgumentParser(
      prog="tpu_vm.py", description=__doc__, allow_abbrev=False,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

  def add(name, help_text):
    p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
    _add_common(p)
    return p

  p = add("create", "Create the TPU slice.")
  _add_accelerator(p)
  _add_create(p)
  p = add("setup", "Copy this checkout to all workers and pip install '.[tpu]' there.")
  _add_setup(p)
  p = add("train", "Start training on all workers (extra --config.x=y are passed through).")
  _add_train(p)
  add("logs", "Follow the training logs of all workers.")
  p = add("collect-logs", "Copy each worker's training log back.")
  _add_accelerator(p, required=False)
  p.add_argument("--num-workers", type=int, default=0,
                 help="Number of workers (default: from --accelerator-type).")
  p.add_argument("--log-dir", default="logs", help="Local directory for the logs.")
  p = add("delete", "Delete the TPU slice.")
  p.add_argument("--queued", action="store_true",
                 help="The slice was created with --queued (deletes the queued resource).")
  p = add("up", "create + setup + train.")
  _add_accelerator(p)
  _add_create(p)
  _add_setup(p)
  _add_train(p)
  return parser


_COMMANDS = {
    "create": create_commands,
    "setup": setup_commands,
    "train": train_commands,
    "logs": logs_commands,
    "collect-logs": collect_logs_commands,
    "delete": delete_commands,
    "up": up_commands,
}


def parse_args(argv):
  """Parses argv; `--config.x=y` arguments become args.overrides (train and up only)."""
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  sub = parser._subparsers._group_actions[0].choices[args.subcommand]  # pylint: disable=protected-access
  takes_overrides = args.subcommand in ("train", "up")
  bad = [a for a in extra if not (takes_overrides and a.startswith("--config."))]
  if bad:
    sub.error(f"unrecognized arguments: {' '.join(bad)}" +
              (" (only --config.x=y overrides are passed through)" if takes_overrides else ""))
  args.overrides = extra
  if takes_overrides and not args.workdir.startswith("gs://"):
    sub.error(f"--workdir={args.workdir!r}: must be a gs:// path that all workers share")
  try:
    if getattr(args, "accelerator_type", None):
      parse_accelerator_type(args.accelerator_type)
    elif args.subcommand == "collect-logs" and args.num_workers <= 0:
      sub.error("collect-logs needs --accelerator-type or --num-workers")
  except ValueError as e:
    sub.error(str(e))
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
