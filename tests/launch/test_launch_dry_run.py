"""Dry runs of the pod launchers (launch/tpu_vm.py, launch/xpk.py): the printed commands."""

import os
import shlex
import subprocess
import sys

import pytest

_LAUNCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "launch")
_COMMON = ["--project=my-project", "--zone=us-west4-a"]
_OVERRIDES = ["--config.data.data_dir=gs://my-bucket/tfds", "--config.mesh.shape=(1,-1,1)"]


def _run(script, *args):
  return subprocess.run([sys.executable, os.path.join(_LAUNCH, script), *args],
                        capture_output=True, text=True, check=False, timeout=60)


def _dry_run(script, *args):
  """Returns the printed commands, each split back into its argv."""
  result = _run(script, *args, "--dry-run")
  assert result.returncode == 0, result.stderr
  return [shlex.split(line) for line in result.stdout.splitlines()]


def _remote(cmd):
  """The --command= of a gcloud ssh / xpk command."""
  (value,) = [a.split("=", 1)[1] for a in cmd if a.startswith("--command=")]
  return value


@pytest.mark.parametrize("accelerator,runtime,workers", [
    ("v5litepod-16", "v2-alpha-tpuv5-lite", 4),
    ("v5p-32", "v2-alpha-tpuv5", 4),
])
def test_tpu_vm_lifecycle(accelerator, runtime, workers):
  name = ["--name=stunet-pod"]
  up = _dry_run("tpu_vm.py", "up", *_COMMON, *name, f"--accelerator-type={accelerator}",
                "--spot", "--config=experiments/configs/base.py",
                "--workdir=gs://my-bucket/runs/base", *_OVERRIDES)
  logs = _dry_run("tpu_vm.py", "logs", *_COMMON, *name)
  collect = _dry_run("tpu_vm.py", "collect-logs", *_COMMON, *name,
                     f"--accelerator-type={accelerator}", "--log-dir=pod-logs")
  delete = _dry_run("tpu_vm.py", "delete", *_COMMON, *name)

  create, archive, scp, install, train = up
  assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "stunet-pod"]
  assert {"--project=my-project", "--zone=us-west4-a", f"--accelerator-type={accelerator}",
          f"--version={runtime}", "--spot"} <= set(create)
  assert archive[0] == "git" and "archive" in archive and archive[-1] == "HEAD"
  tarball = [a.split("=", 1)[1] for a in archive if a.startswith("--output=")][0]
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert scp[5:7] == [tarball, "stunet-pod:stunet-src.tar.gz"] and "--worker=all" in scp
  assert install[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "stunet-pod"]
  assert "--worker=all" in install
  assert "pip install -e '.[tpu]'" in _remote(install)

  assert train[:6] == install[:6] and "--worker=all" in train
  remote = _remote(train)
  assert remote.startswith("cd stunet && nohup python3 -m experiments.train ")
  assert remote.endswith("> ~/stunet-train.log 2>&1 < /dev/null &")
  argv = shlex.split(remote.split("nohup ", 1)[1].split(" > ", 1)[0])
  assert argv == ["python3", "-m", "experiments.train", "--config=experiments/configs/base.py",
                  "--workdir=gs://my-bucket/runs/base", "--multihost", *_OVERRIDES]

  (follow,) = logs
  assert "--worker=all" in follow and "tail -n +1 -F ~/stunet-train.log" in _remote(follow)
  assert collect[0] == ["mkdir", "-p", "pod-logs"]
  assert [c[-1] for c in collect[1:]] == [f"--worker={i}" for i in range(workers)]
  assert [c[5:7] for c in collect[1:]] == [
      ["stunet-pod:stunet-train.log", f"pod-logs/worker-{i}.log"] for i in range(workers)]
  assert delete == [["gcloud", "compute", "tpus", "tpu-vm", "delete", "stunet-pod",
                     "--project=my-project", "--zone=us-west4-a", "--quiet"]]


def test_tpu_vm_queued_resources_and_runtime_override():
  args = [*_COMMON, "--name=qr-pod", "--queued"]
  create, wait = _dry_run("tpu_vm.py", "create", *args, "--accelerator-type=v5p-32",
                          "--reserved", "--runtime-version=v2-alpha-tpuv5-custom")
  assert create[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "qr-pod"]
  assert {"--node-id=qr-pod", "--accelerator-type=v5p-32",
          "--runtime-version=v2-alpha-tpuv5-custom", "--reserved"} <= set(create)
  assert wait[:2] == ["bash", "-c"]
  assert "queued-resources describe qr-pod" in wait[2] and "ACTIVE" in wait[2]
  (delete,) = _dry_run("tpu_vm.py", "delete", *args)
  assert delete[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "qr-pod"]
  assert "--force" in delete


def test_xpk_workload_v5e_and_v5p():
  common = [*_COMMON, "--cluster=stunet"]
  (cluster,) = _dry_run("xpk.py", "cluster-create", *common, "--tpu-type=v5litepod-16",
                        "--num-slices=2", "--spot")
  assert cluster[:3] == ["xpk", "cluster", "create"]
  assert {"--cluster=stunet", "--tpu-type=v5litepod-16", "--num-slices=2", "--spot"} <= set(
      cluster)
  for tpu_type, image in [("v5litepod-16", "--base-docker-image=python:3.12"),
                          ("v5p-32", "--docker-image=gcr.io/my-project/stunet:latest")]:
    (workload,) = _dry_run("xpk.py", "workload", *common, "--workload=base-run",
                           f"--tpu-type={tpu_type}", "--num-slices=2", image,
                           "--config=experiments/configs/base.py",
                           "--workdir=gs://my-bucket/runs/base", *_OVERRIDES)
    assert workload[:3] == ["xpk", "workload", "create"]
    assert {"--cluster=stunet", "--workload=base-run", f"--tpu-type={tpu_type}",
            "--num-slices=2", image} <= set(workload)
    train = _remote(workload).split(" && ")[-1]
    assert shlex.split(train) == [
        "python3", "-m", "experiments.train", "--config=experiments/configs/base.py",
        "--workdir=gs://my-bucket/runs/base", "--multihost", *_OVERRIDES]
    assert any(a.startswith("--script-dir=") for a in workload) == ("base" in image)
  (delete,) = _dry_run("xpk.py", "delete", *common, "--workload=base-run")
  assert delete[:3] == ["xpk", "workload", "delete"] and "--workload=base-run" in delete


@pytest.mark.parametrize("script,args,message", [
    ("tpu_vm.py", ["create", "--zone=z", "--name=n", "--accelerator-type=v5p-32"],
     "required: --project"),
    ("tpu_vm.py", ["create", *_COMMON, "--name=n", "--accelerator-type=v9-8"],
     "--accelerator-type='v9-8'"),
    ("tpu_vm.py", ["train", *_COMMON, "--name=n", "--workdir=gs://b/r"], "required: --config"),
    ("tpu_vm.py", ["train", *_COMMON, "--name=n", "--config=c.py", "--workdir=runs/x"],
     "--workdir='runs/x': must be a gs:// path"),
    ("tpu_vm.py", ["train", *_COMMON, "--name=n", "--config=c.py", "--workdir=gs://b/r",
                   "--steps=3"], "unrecognized arguments: --steps=3"),
    ("tpu_vm.py", ["collect-logs", *_COMMON, "--name=n"], "--accelerator-type or --num-workers"),
    ("tpu_vm.py", [], "SUBCOMMAND"),
    ("xpk.py", ["workload", *_COMMON, "--cluster=c", "--workload=w", "--tpu-type=v5p-32",
                "--config=c.py", "--workdir=gs://b/r"],
     "one of the arguments --docker-image --base-docker-image is required"),
    ("xpk.py", ["cluster-create", *_COMMON, "--tpu-type=v5p-32"], "required: --cluster"),
])
def test_usage_errors(script, args, message):
  result = _run(script, *args, "--dry-run")
  assert result.returncode == 2
  assert result.stdout == ""
  # One line naming the launcher, its subcommand and the bad argument; no usage block.
  (line,) = result.stderr.splitlines()
  assert line.startswith(f"error: {script}") and message in line, result.stderr


def test_failed_command_is_named(tmp_path):
  """Without --dry-run the commands run; the first failure stops the script and is named."""
  fake_xpk = tmp_path / "xpk"
  fake_xpk.write_text("#!/bin/sh\necho \"$@\" >> \"$0.calls\"\nexit 3\n")
  fake_xpk.chmod(0o755)
  result = _run("xpk.py", "delete", *_COMMON, "--cluster=c", "--workload=w",
                f"--xpk={fake_xpk}")
  assert result.returncode == 1
  assert "command failed with exit status 3" in result.stderr
  assert "workload delete" in result.stderr and "--workload=w" in result.stderr
  assert (tmp_path / "xpk.calls").read_text().split() == [
      "workload", "delete", "--project=my-project", "--zone=us-west4-a", "--cluster=c",
      "--workload=w"]
