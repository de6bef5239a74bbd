"""Bad input to every entry point: one line `error: <message>` on stderr, exit status 2.

Each case runs the real command line as a subprocess and fails before any training or
compiling (flag parsing, config validation, the run's up-front check), so it costs an import.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = "--config=experiments/configs/tiny.py"


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # --cpu_devices sets the device count where a case needs one
  return env


def _run(*argv):
  return subprocess.run([sys.executable, *argv], cwd=ROOT, env=_env(), capture_output=True,
                        text=True, check=False, timeout=300)


def _one_error_line(proc) -> str:
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  lines = proc.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
  return lines[0]


def test_train_misspelled_field_gets_did_you_mean(tmp_path):
  proc = _run("-m", "experiments.train", TINY, f"--workdir={tmp_path / 'w'}",
              "--config.model.temporal_factor=(2,2)")
  assert _one_error_line(proc) == (
      "error: --config.model.temporal_factor: config.model has no field 'temporal_factor'; "
      "did you mean 'temporal_factors'?")


def test_train_missing_config_file_is_named(tmp_path):
  proc = _run("-m", "experiments.train", "--config=experiments/configs/does_not_exist.py",
              f"--workdir={tmp_path / 'w'}")
  assert _one_error_line(proc) == (
      "error: --config: config file experiments/configs/does_not_exist.py does not exist")
  # An override of the missing file's fields reports the file, not the override.
  proc = _run("-m", "experiments.train", "--config=experiments/configs/does_not_exist.py",
              f"--workdir={tmp_path / 'w'}", "--config.model.channels=8")
  assert _one_error_line(proc) == (
      "error: --config: config file experiments/configs/does_not_exist.py does not exist")


def test_train_temporal_factors_of_the_wrong_length(tmp_path):
  proc = _run("-m", "experiments.train", TINY, f"--workdir={tmp_path / 'w'}",
              "--config.model.temporal_factors=(2,2,2)")
  line = _one_error_line(proc)
  assert "model.temporal_factors=(2, 2, 2)" in line and "model.channel_mult" in line
  assert not (tmp_path / "w").exists()


def test_train_frames_7_fails_before_the_t2i_stage_writes_anything(tmp_path):
  """The video stage rejects 7 frames; the t2i stage, which would accept them, never runs."""
  workdir = tmp_path / "w"
  proc = _run("-m", "experiments.train", TINY, f"--workdir={workdir}", "--config.data.frames=7",
              f"--config.data.data_dir={tmp_path / 'data'}")
  line = _one_error_line(proc)
  assert line.startswith("error: stage 'video': Number of frames 7 is not divisible")
  assert "model.temporal_factors" in line and "data.frames" in line
  assert not workdir.exists()
  assert not (tmp_path / "data").exists()  # not even the dataset was built


def test_train_batch_not_divisible_by_the_data_parallel_size(tmp_path):
  proc = _run("-m", "experiments.train", TINY, f"--workdir={tmp_path / 'w'}", "--cpu_devices=2",
              "--config.data.global_batch_size=3")
  line = _one_error_line(proc)
  assert line.startswith("error: stage 't2i': data.global_batch_size=3 is not divisible by the "
                         "data-parallel size 2")
  assert not (tmp_path / "w").exists()


def test_train_bad_flag_value_and_stray_argument(tmp_path):
  proc = _run("-m", "experiments.train", TINY, f"--workdir={tmp_path / 'w'}",
              "--config.data.frames=abc")
  assert _one_error_line(proc).startswith("error: flag --config.data.frames=abc: ")
  proc = _run("-m", "experiments.train", TINY, f"--workdir={tmp_path / 'w'}", "stray")
  assert _one_error_line(proc) == "error: unexpected arguments: ['stray']"


def test_program_bugs_keep_their_traceback(tmp_path):
  config = tmp_path / "buggy.py"
  config.write_text("def get_config():\n  raise RuntimeError('a bug in the config code')\n")
  proc = _run("-m", "experiments.train", f"--config={config}", f"--workdir={tmp_path / 'w'}")
  assert proc.returncode == 1
  assert "Traceback" in proc.stderr and "RuntimeError: a bug in the config code" in proc.stderr


def test_verbosity_shows_the_traceback_of_a_user_error(tmp_path):
  proc = _run("-m", "experiments.train", TINY, f"--workdir={tmp_path / 'w'}",
              "--config.model.temporal_factors=(2,2,2)", "--verbosity=1")
  assert proc.returncode == 1
  assert "Traceback" in proc.stderr and "ValueError" in proc.stderr


def test_main_job_default_config_override_and_frames(tmp_path):
  # The default config file is loaded when its flag is defined, overrides included.
  proc = _run("-m", "experiments.main", "--config.model.channelz=3",
              f"--workdir={tmp_path / 'w'}")
  assert _one_error_line(proc) == (
      "error: --config.model.channelz: config.model has no field 'channelz'; did you mean "
      "'channels'?")
  proc = _run("-m", "experiments.main", "--config.data.frames=7", f"--workdir={tmp_path / 'w'}",
              f"--config.data.data_dir={tmp_path / 'data'}")
  assert _one_error_line(proc).startswith("error: stage 'video': Number of frames 7")
  assert not (tmp_path / "w").exists()


def test_sample_and_evaluate_name_the_missing_run(tmp_path):
  missing = tmp_path / "no_run"
  proc = _run("-m", "experiments.sample", f"--workdir={missing}", "--prompt=a red circle")
  line = _one_error_line(proc)
  assert str(missing) in line and "video/config.json is missing" in line
  proc = _run("-m", "experiments.evaluate", f"--workdir={missing}")
  line = _one_error_line(proc)
  assert str(missing) in line and "video/config.json is missing" in line


def test_convert_refuses_an_unsupported_diffusers_option(tmp_path):
  src = tmp_path / "unet"
  src.mkdir()
  (src / "config.json").write_text(json.dumps({"_class_name": "UNet3DConditionModel"}))
  proc = _run("-m", "experiments.convert", "--from=diffusers", f"--src={src}",
              f"--out={tmp_path / 'out'}")
  line = _one_error_line(proc)
  assert line.startswith(f"error: --src={src}: config.json: _class_name='UNet3DConditionModel' "
                         "is not supported")
  assert not (tmp_path / "out").exists()


def test_build_data_names_the_missing_video_dir(tmp_path):
  proc = _run("-m", "experiments.build_data", "--dataset=video_folder",
              f"--video_dir={tmp_path / 'none'}", f"--captions_csv={tmp_path / 'c.csv'}",
              f"--data_dir={tmp_path / 'data'}")
  assert _one_error_line(proc) == (
      f"error: VideoFolderConfig.video_dir='{tmp_path / 'none'}' is not a directory")
  assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("module,flag,extra", [
    ("experiments.ablate", "--sweep", ["--workdir=runs/unused"]),
    ("experiments.summary", "--config", []),
    ("experiments.aot_check", "--config", [])])
def test_config_file_entry_points_name_the_missing_file(module, flag, extra):
  proc = _run("-m", module, f"{flag}=nope.py", *extra)
  assert _one_error_line(proc) == f"error: {flag}: config file nope.py does not exist"


def test_aot_check_misspelled_field():
  proc = _run("-m", "experiments.aot_check", TINY, "--config.model.temporal_factor=(2,)")
  assert _one_error_line(proc).startswith(
      "error: --config.model.temporal_factor: config.model has no field 'temporal_factor'")


def test_launchers(tmp_path):
  proc = _run("launch/local.py", "--num_processes=0", "--", TINY)
  assert _one_error_line(proc) == "error: --num_processes and --devices_per_process must be >= 1"
  proc = _run("launch/local.py", "--num_processes=x")
  assert _one_error_line(proc) == (
      "error: local.py: argument --num_processes: invalid int value: 'x'")
  proc = _run("launch/tpu_vm.py", "create", "--project=p", "--zone=z", "--name=n",
              "--accelerator-type=v5p-8", "--queued", "--preemptible", "--dry-run")
  assert _one_error_line(proc) == (
      "error: --preemptible is not available with --queued; use --spot")
  proc = _run("launch/xpk.py", "workload", "--project=p", "--zone=z", "--cluster=c",
              "--workload=w", "--tpu-type=v5p-9x", "--config=c.py", "--workdir=gs://b/r",
              "--docker-image=i", "--dry-run")
  assert _one_error_line(proc) == (
      "error: xpk.py workload: --tpu-type='v5p-9x': expected v4-N, v5litepod-N, v5p-N or v6e-N")
