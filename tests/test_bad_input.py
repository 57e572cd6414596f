"""Every bad value is refused before any work starts: a clear message naming the key, nothing
written to the run dir or the cache, no secret left behind, no traceback, exit 2.

The table runs in-process: the config composed exactly as the CLI composes it, then the pure
checks the CLI runs before the first stage (stages.validate: secrets and unknown keys, then every
selected stage's own check, stages/*.py::check). A few real CLI runs check what only a process
shows: exit 2, exactly one line on stderr, no traceback or Hydra trailer, no run dir, and no
refused secret left in the records Hydra writes before any check can run.
"""
import pytest
from helpers import ROOT, compose_config, run_cli
from hydra.errors import HydraException

from spelling_exp.errors import SpellingExpError
from spelling_exp.stages import validate

DATA_TRAIN = ["stages=[data,train]"]
DATA_EVAL = ["stages=[data,eval_base]"]
# (overrides, what the message must say). Our own checks print exactly one line.
OURS = [
    ([*DATA_TRAIN, "lora.r=0"], "lora.r=0: must be >= 1"),
    ([*DATA_TRAIN, "lora.alpha=0"], "lora.alpha=0: must be > 0"),
    ([*DATA_TRAIN, "lora.dropout=1.0"], "lora.dropout=1.0: must be in [0, 1)"),
    ([*DATA_TRAIN, "lora.target_modules=[]"], "lora.target_modules=[]"),
    ([*DATA_TRAIN, "train.learning_rate=-1"], "train.learning_rate=-1.0: must be > 0"),
    ([*DATA_TRAIN, "train.batch_size=0"], "train.batch_size=0: must be >= 1"),
    ([*DATA_TRAIN, "train.grad_accum=0"], "train.grad_accum=0: must be >= 1"),
    ([*DATA_TRAIN, "train.max_length=0"], "train.max_length=0: must be >= 8"),
    ([*DATA_TRAIN, "train.warmup_ratio=1.5"], "train.warmup_ratio=1.5: must be in [0, 1)"),
    ([*DATA_TRAIN, "train.epochs=0"], "train.epochs=0.0: must be > 0"),
    ([*DATA_TRAIN, "train.save_steps=0"], "train.save_steps=0: must be >= 1"),
    ([*DATA_TRAIN, "train.resume=/nonexistent"], "train.resume=/nonexistent: not a valid training checkpoint"),
    ([*DATA_EVAL, "eval.batch_size=0"], "eval.batch_size=0: must be >= 1"),
    ([*DATA_EVAL, "eval.max_new_tokens=0"], "eval.max_new_tokens=0: must be >= 1"),
    ([*DATA_EVAL, "eval.n_questions=0"], "eval.n_questions=0: must be >= 1"),
    ([*DATA_EVAL, "eval.n_samples=0"], "eval.n_samples=0: must be >= 1"),
    ([*DATA_EVAL, "eval.sampling.temperature=-1"], "eval.sampling.temperature=-1.0: must be > 0"),
    ([*DATA_EVAL, "eval.sampling.top_p=1.5"], "eval.sampling.top_p=1.5: must be in (0, 1]"),
    ([*DATA_EVAL, "eval.sampling.top_k=-1"], "eval.sampling.top_k=-1: must be >= 0"),
    ([*DATA_EVAL, "eval.sampling.min_p=1"], "eval.sampling.min_p=1.0: must be in [0, 1)"),
    ([*DATA_EVAL, "eval.last_as_word=2"], "eval.last_as_word=2.0: must be in [0, 1]"),
    ([*DATA_EVAL, "eval/sampling=greedy", "eval.n_samples=3"], "eval.n_samples > 1 with greedy"),
    ([*DATA_EVAL, "+eval.phrasings.count=['How many {letters}?']"], "unknown placeholder"),
    (["stage=eval", "eval.adapter_path=/nonexistent"], "eval.adapter_path=/nonexistent: no LoRA adapter"),
    (["stage=compare", "compare.base=/nonexistent"], "compare.base=/nonexistent: no finished evaluation"),
    (["stage=compare"], "no eval_base evaluation in"),
    (["stage=compare", "sweep_dir=/nonexistent"], "sweep_dir=/nonexistent: no such directory"),
    (["stages=[data,eval_base,train,eval_adapter,compare]", "compare.control=/nonexistent"],
     "compare.control=/nonexistent: no finished evaluation"),
    (["stage=eval_adapter"], "run the train stage first"),
    (["stages=[data,eval_control]"], "run the train_control stage first"),
    (["stage=report"], "stage=report: no comparison in"),
    (["stages=[data,eval_base]", "eval.merge_adapter=true", "model.dtype=bfloat16"], "eval.merge_adapter=true with"),
    (["stage=data", "model.gguf_file=nope.gguf"], "model.gguf_file=nope.gguf: no such file"),
    (["stage=data", "data.holdout.source=file"], "data.holdout.source=file needs data.holdout.path"),
    (["stage=data", "data.holdout.min_length=9", "data.holdout.max_length=5"], "min_length (9) > max_length (5)"),
    (["stage=data", "data.examples.n_train=-1"], "data.examples.n_train must be >= 0"),
    (["stage=data", "+template.mix.separators.semicolon=1"], "unknown separator 'semicolon'"),
    (["stage=data", "model=qwen3_4b", "model.enable_thinking=true"], "non-thinking"),
    (["stage=data", "model=qwen3_4b", "+model.chat_template_kwargs.enable_thinking=true"], "non-thinking"),
    (["stage=data", "+train.learnign_rate=1e-4"], "train.learnign_rate (did you mean train.learning_rate?)"),
    (["stage=data", "+data.holdout.n_tset=5"], "unknown key data.holdout.n_tset (did you mean data.holdout.n_test?)"),
    (["stage=data", f"model.path={ROOT / 'tests' / 'data'}", "model.gguf_file=null"],
     "a directory with no model in it (no config.json)"),
    (["stage=data", "model.path=/nonexistent/model", "model.gguf_file=null"], "model.path=/nonexistent/model: no such"),
    ([*DATA_TRAIN, "train.max_steps=-1"], "train.max_steps=-1: must be >= 1, or null to train train.epochs epochs"),
    ([*DATA_TRAIN, "train.max_steps=0"], "train.max_steps=0: must be >= 1"),
    (["stages=[data,eval_base,train]", "lora.target_modules=[nonexistent_proj]"],
     "nonexistent_proj not in smollm2_135m (its linear layers: down_proj, gate_proj,"),
    (["stages=[data,train]", "model=qwen3_tiny", "lora.target_modules=[q_proj,c_attn]"], "c_attn not in"),
    (["stages=[data,eval_random]"], "run the train_random stage first"),
    (["stage=data", f"paths.cache_dir={ROOT / 'README.md'}/cache"], "README.md is a file, not a directory"),
    ([*DATA_EVAL, "eval.backend=openai", "eval.merge_adapter=true"], "eval.merge_adapter=true: the openai backend"),
    ([*DATA_EVAL, "eval.backend=vllm", "eval.merge_adapter=true"], "eval.merge_adapter=true: the vllm backend"),
    ([*DATA_EVAL, "eval.backend=vllm", "eval.vllm.max_lora_rank=48"], "eval.vllm.max_lora_rank=48: vLLM accepts only"),
    (["stages=[data,eval_base,train,eval_adapter,compare]", "compare.random=/nonexistent"],
     "compare.random=/nonexistent: no finished evaluation"),
    (["stage=data", "+logger.api_key=SECRET-abc123"], "logger.api_key: secrets are read from the environment only"),
    (["stage=data", "+model.chat_template_kwargs.token=SECRET-abc123"], "model.chat_template_kwargs.token: secrets"),
]
# Hydra's composition errors: its message (several lines: the error, then the OmegaConf error it wraps).
HYDRAS = [
    (["train.lr_scheduler=bogus"], "expected one of [linear, cosine,"),
    (["eval.backend=bogus"], "expected one of [hf, openai, llamacpp, vllm]"),
    (["data.seed=abc"], "data.seed"),
    (["data.holdout.bogus=1"], "Key 'bogus' not in 'HoldoutConfig'"),
    (["model=no_such_model"], "Could not find 'model/no_such_model'"),
    (["stage=nope"], "expected one of [data, eval,"),
    (["lora.r=abc"], "lora.r"),
]


IDS = {"ids": lambda v: " ".join(v) if isinstance(v, list) else ""}


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("overrides,message", OURS, **IDS)
def test_bad_value_is_refused_before_any_work(overrides, message, tmp_path, cache_dir):
    before = _snapshot(cache_dir)
    cfg = compose_config(*overrides, f"output_dir={tmp_path}/run")
    with pytest.raises(SpellingExpError) as e:
        validate(cfg, tmp_path / "run")
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)  # the CLI prints it as one line
    assert not (tmp_path / "run").exists(), "nothing may be written to the run dir"
    assert _snapshot(cache_dir) == before, "nothing may be written to the cache"


@pytest.mark.parametrize("overrides,message", HYDRAS, **IDS)
def test_bad_override_is_refused_at_composition(overrides, message):
    with pytest.raises(HydraException) as e:
        compose_config(*overrides)
    assert message in f"{e.value}\n{e.value.__cause__}"  # what Hydra prints: its error, then the cause


# ------------------------------------------------------------------ what only a process shows
def _refused(r, tmp_path):
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "HYDRA_FULL_ERROR" not in r.stderr, r.stderr
    assert not (tmp_path / "run").exists(), "nothing may be written to the run dir"


@pytest.mark.slow
def test_our_refusal_is_one_line_and_exit_2(tmp_path, cache_dir):
    before = _snapshot(cache_dir)
    r = run_cli(*DATA_TRAIN, "lora.r=0", f"output_dir={tmp_path}/run", f"hydra.run.dir={tmp_path}/hydra")
    _refused(r, tmp_path)
    assert r.stderr == "spelling_exp: error: lora.r=0: must be >= 1\n", r.stderr
    assert _snapshot(cache_dir) == before, "nothing may be written to the cache"


@pytest.mark.slow
@pytest.mark.parametrize("args", [["model=no_such_model"], ["-m", "stage=data", "lora.r=4,abc"]], **IDS)
def test_hydra_refusal_is_exit_2_without_its_trailer(args, tmp_path):
    """Hydra exits 1 on every error; one that is Hydra refusing the input is exit 2 (cli.py::entrypoint)."""
    r = run_cli(*args, f"output_dir={tmp_path}/run", f"hydra.run.dir={tmp_path}/hydra",
                f"hydra.sweep.dir={tmp_path}/sweep")
    _refused(r, tmp_path)
    assert "Could not find 'model/no_such_model'" in r.stderr or "lora.r=abc" in r.stderr, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("secret", ["+logger.api_key=SECRET-abc123", "+model.chat_template_kwargs.token=SECRET-abc123"])
def test_refused_secret_is_left_in_no_record(secret, tmp_path):
    r = run_cli("stage=data", secret, f"output_dir={tmp_path}/run", f"hydra.run.dir={tmp_path}/hydra")
    _refused(r, tmp_path)
    assert r.stderr.startswith("spelling_exp: error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    # Hydra writes its own records (.hydra/) before any check can run; the secret must not stay there
    assert (tmp_path / "hydra" / ".hydra" / "overrides.yaml").is_file()
    assert not any("SECRET-abc123" in p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())


def test_an_evaluation_compared_with_itself_is_refused(tmp_path):
    done = tmp_path / "eval"
    done.mkdir()
    (done / "metrics.json").write_text("{}")
    cfg = compose_config("stage=compare", f"compare.base={done}", f"compare.adapter={done}/",
                         f"output_dir={tmp_path}/run")
    with pytest.raises(SpellingExpError, match="compare.adapter=.*the same evaluation as compare.base"):
        validate(cfg, tmp_path / "run")


def test_a_sweep_with_one_bad_job_is_refused_before_any_job_runs(tmp_path):
    """The valid job lora.r=4 would run first; the whole sweep is checked before it (sweep_checks.py)."""
    r = run_cli("-m", "+experiment=smoke", "lora.r=4,0", f"paths.multirun_root={tmp_path}/mr", "logger=none")
    assert r.returncode == 2 and r.stderr == "spelling_exp: error: sweep job 1 (lora.r=0): lora.r=0: must be >= 1\n"
    assert not (tmp_path / "mr").exists(), "no job ran, no sweep dir was written"


def test_a_preset_sweep_is_checked_with_its_own_seeds(tmp_path):
    r = run_cli("+experiment=study_cpu", "eval.n_questions=0", f"paths.multirun_root={tmp_path}/mr", "logger=none")
    assert r.returncode == 2 and "sweep job 0 (train.seed=0): eval.n_questions=0: must be >= 1" in r.stderr, r.stderr
    assert not (tmp_path / "mr").exists()


@pytest.mark.slow
def test_a_server_that_is_not_there_leaves_no_empty_evaluation(tmp_path):
    r = run_cli("stage=eval", "eval.backend=openai", "eval.openai.base_url=http://127.0.0.1:9/v1",
                "eval.openai.model=x", f"output_dir={tmp_path}/run")
    assert r.returncode == 2 and "no server answers" in r.stderr
    assert not (tmp_path / "run" / "eval").exists()


@pytest.mark.slow
@pytest.mark.parametrize("arg,line", [
    ("train.seed=abc",
     "spelling_exp: error: train.seed=abc: Value 'abc' of type 'str' could not be converted to Integer"),
    ("stages=[data,bogus]", "spelling_exp: error: stages=[data,bogus]: Invalid value 'bogus', expected one of [data,"),
])
def test_a_value_of_the_wrong_type_is_one_line_without_omegaconf_internals(arg, line, tmp_path):
    r = run_cli(arg, f"output_dir={tmp_path}/run", f"hydra.run.dir={tmp_path}/hydra")
    _refused(r, tmp_path)
    assert r.stderr.startswith(line) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "reference_type" not in r.stderr and "full_key" not in r.stderr


def test_a_full_disk_is_recognised_whoever_reports_it():
    """cli.disk_full: ENOSPC from Python, or the tokenizers' Rust writer's plain Exception (seen on a
    300 KiB tmpfs as the cache dir: then one line, exit 2, and the rerun on a disk with room resumes)."""
    import errno

    from spelling_exp.cli import disk_full

    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(Exception("No space left on device (os error 28)"))
    assert not disk_full(OSError(errno.EACCES, "Permission denied")) and not disk_full(ValueError("x"))


@pytest.mark.slow
def test_ctrl_c_during_the_data_build_leaves_no_cache_entry_and_the_rerun_builds_it(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    # unbuffered: the child's log lines arrive as they are written, not in 8 KiB blocks at its end
    env = {**os.environ, "SPELLING_EXP_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "spelling_exp", "stage=data", f"output_dir={tmp_path}/run"]
    # SIGINT at its default in the child: a test before this one may leave it ignored in pytest's
    # process, and an ignored SIGINT is inherited (the CLI then rightly keeps ignoring it)
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in p.stdout:  # wait until the build has started, however loaded the machine is
        seen.append(line)
        if "english tokens:" in line:  # step 1 of the build done, the examples (~5 s) under way
            break
    assert p.poll() is None, "the build finished before it could be interrupted: " + "".join(seen)[-2000:]
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out = "".join(seen) + p.communicate(timeout=60)[0]
    assert p.returncode == 130 and "interrupted by SIGINT; rerun the same command to resume" in out
    assert "Traceback" not in out
    data = tmp_path / "cache" / "data"
    assert not [d for d in data.iterdir() if d.is_dir()], "no half-built entry in the cache"
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and (tmp_path / "run" / "data" / "manifest.json").is_file()
