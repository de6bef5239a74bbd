#!/usr/bin/env python3
r"""Rehearses a pod run on this machine: N processes x M simulated CPU devices.

Every process runs the same `python -m experiments.train` command as a pod host would, with
`--cpu_devices=M` and its place in the run given through the environment
(`STUNET_COORDINATOR=localhost:<free port>`, `STUNET_NUM_PROCESSES`, `STUNET_PROCESS_ID`,
read by `stunet.parallel.distributed`). Each process logs to `<logdir>/process_<i>.log`. The
launcher waits for all of them; if one fails, the others are stopped (they would block in
collectives) and the launcher exits with the failed process's exit code.

  python launch/local.py --num_processes=2 --devices_per_process=2 -- \
      --config=experiments/configs/tiny.py --workdir=runs/local2x2

Arguments after `--` go to experiments/train.py unchanged.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import cli_errors  # launch/ is on sys.path when run as a script

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  """A TCP port that is free now (the coordinator binds it a moment later)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def process_env(base: dict, port: int, num_processes: int, process_id: int) -> dict:
  env = dict(base)
  env.update({"STUNET_COORDINATOR": f"localhost:{port}",
              "STUNET_NUM_PROCESSES": str(num_processes),
              "STUNET_PROCESS_ID": str(process_id),
              "JAX_PLATFORMS": "cpu"})
  return env


def process_command(devices_per_process: int, train_args: list[str]) -> list[str]:
  return [sys.executable, "-m", "experiments.train", f"--cpu_devices={devices_per_process}",
          *train_args]


def launch(num_processes: int, devices_per_process: int, train_args: list[str], logdir: str,
           poll_seconds: float = 0.5) -> int:
  """Runs the processes; returns 0, or the exit code of the first process that failed."""
  if num_processes < 1 or devices_per_process < 1:
    raise ValueError("--num_processes and --devices_per_process must be >= 1")
  os.makedirs(logdir, exist_ok=True)
  port = free_port()
  procs, logs = [], []
  for i in range(num_processes):
    log = open(os.path.join(logdir, f"process_{i}.log"), "w")
    logs.append(log)
    procs.append(subprocess.Popen(
        process_command(devices_per_process, train_args), cwd=_REPO_ROOT,
        env=process_env(os.environ, port, num_processes, i), stdout=log,
        stderr=subprocess.STDOUT))
  failed = None
  try:
    while failed is None and any(p.poll() is None for p in procs):
      failed = next((i for i, p in enumerate(procs) if p.returncode not in (None, 0)), None)
      time.sleep(poll_seconds)
    if failed is None:
      failed = next((i for i, p in enumerate(procs) if p.returncode != 0), None)
  finally:
    for p in procs:
      if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    for p in procs:
      try:
        p.wait(timeout=30)
      except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    for log in logs:
      log.close()
  if failed is not None:
    code = procs[failed].returncode
    print(f"process {failed} failed with exit code {code}; see "
          f"{os.path.join(logdir, f'process_{failed}.log')}", file=sys.stderr)
    return code if code > 0 else 1
  return 0


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if "--" in argv:
    split = argv.index("--")
    ours, train_args = argv[:split], argv[split + 1:]
  else:
    ours, train_args = argv, []
  parser = cli_errors.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=2)
  parser.add_argument("--logdir", default=None,
                      help="Per-process logs (default: <workdir>/logs, else ./local_logs).")
  args = parser.parse_args(ours)
  logdir = args.logdir
  if logdir is None:
    workdir = next((a.split("=", 1)[1] for a in train_args if a.startswith("--workdir=")), None)
    logdir = os.path.join(workdir, "logs") if workdir else "local_logs"
  return launch(args.num_processes, args.devices_per_process, train_args, logdir)


if __name__ == "__main__":
  sys.exit(cli_errors.run(main))
