"""Config composition: fast, typed, one source of defaults, every preset composes, bad input exits 2."""
import dataclasses
import time

import pytest
from helpers import CONF, ROOT, compose_config, make_config, run_cli
from hydra.errors import HydraException
from omegaconf import OmegaConf

import spelling_exp.config as cfgmod
from spelling_exp.config import Config
from spelling_exp.errors import SpellingExpError
from spelling_exp.stages import validate

GROUP_DIRS = sorted(p for p in CONF.rglob("*") if p.is_dir() and p.relative_to(CONF).parts[0]
                    not in ("experiment", "sweep", "hydra"))
OPTION_FILES = [f for d in GROUP_DIRS for f in sorted(d.glob("*.yaml"))]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SWEEPS = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))
# Fields whose values are data, not settings: they have no code default, YAML is their only source.
DATA_FIELDS = {"model", "template", "eval.phrasings"}


def test_help_is_fast_and_imports_no_torch():
    t0 = time.perf_counter()
    r = run_cli("--help")
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    assert "model: qwen3_4b, qwen3_tiny, smollm2_135m" in r.stdout and "paths: default" in r.stdout
    assert elapsed < 8  # the 2 s target is measured by benchmarks/data_build.py; this catches regressions


def test_cfg_job_imports_no_heavy_modules():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "spelling_exp", "--cfg", "job",
                        "+experiment=data_qwen3"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in ("torch", "transformers", "datasets", "peft", "trl")}
    assert "family: qwen3" in r.stdout and "enable_thinking: false" in r.stdout


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_preset_composes(experiment):
    cfg = make_config(f"+experiment={experiment}")
    assert isinstance(cfg, Config) and cfg.experiment_name == experiment
    assert cfg.model.name and cfg.template.templates and cfg.stages


@pytest.mark.parametrize("sweep", SWEEPS)
@pytest.mark.parametrize("experiment", ["smoke", "spelling_lora"])
def test_every_sweep_preset_composes(sweep, experiment):
    cfg = compose_config(f"+experiment={experiment}", f"+sweep={sweep}", hydra_node=True)
    assert cfg.sweep_id == sweep and cfg.hydra.sweeper.params
    if experiment != "smoke":
        return  # each swept value once is enough (composing is ~0.3 s a value)
    for key, values in cfg.hydra.sweeper.params.items():  # each swept value composes too
        for value in str(values).split(","):
            make_config(f"+experiment={experiment}", f"+sweep={sweep}", f"{key}={value}")


@pytest.mark.parametrize("option", [f for f in OPTION_FILES if not f.stem.startswith("_")],  # _x: included only
                         ids=lambda p: str(p.relative_to(CONF)))
def test_every_group_option_composes(option):
    rel = option.relative_to(CONF)
    make_config(f"{'/'.join(rel.parts[:-1])}={option.stem}")


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


@pytest.mark.parametrize("option", OPTION_FILES, ids=lambda p: str(p.relative_to(CONF)))
def test_yaml_never_restates_a_schema_default(option):
    """Defaults live in spelling_exp/config.py; a YAML value equal to one is a copy that can drift."""
    group = ".".join(option.relative_to(CONF).parts[:-1])
    raw = OmegaConf.to_container(OmegaConf.load(option) or OmegaConf.create()) or {}
    raw.pop("defaults", None)
    schema = OmegaConf.to_container(OmegaConf.structured(Config), resolve=False, enum_to_str=True)
    restated = []
    for key, value in _leaves(raw, group):
        node = schema
        for part in key.split("."):
            node = node.get(part, "<absent>") if isinstance(node, dict) else "<absent>"
        if node == value and node not in ({}, []):
            restated.append(f"{key}={value!r}")
    assert not restated, f"{option.relative_to(CONF)} restates schema defaults: {restated}; delete them"


def test_default_composition_is_the_schema():
    """With no overrides, every setting is the dataclass default (only data fields come from YAML)."""
    composed = OmegaConf.to_container(compose_config(), resolve=False, enum_to_str=True)
    schema = OmegaConf.to_container(OmegaConf.structured(Config), resolve=False, enum_to_str=True)
    for key, value in _leaves(schema):
        if key in DATA_FIELDS or key.split(".")[0] in DATA_FIELDS:
            continue
        node = composed
        for part in key.split("."):
            node = node[part]
        assert node == value, f"{key}: composed {node!r} but the schema default is {value!r}"
    assert dataclasses.asdict(make_config().eval)["batch_size"] == Config().eval.batch_size


def _choices(enum) -> str:
    """How OmegaConf lists an enum's members in its error: "[a, b, c]"."""
    return "[" + ", ".join(m.name for m in enum) + "]"


@pytest.mark.parametrize("override,key,choices", [
    ("train.precision=bf17", "train.precision", _choices(cfgmod.Precision)),
    ("train.backend=unslot", "train.backend", _choices(cfgmod.TrainBackend)),
    ("train.lr_scheduler=cosin", "train.lr_scheduler", "cosine"),
    ("eval.backend=vlm", "eval.backend", _choices(cfgmod.EvalBackend)),
    ("eval.split=dev", "eval.split", _choices(cfgmod.Split)),
    ("data.holdout.on_overlap=ignore", "data.holdout.on_overlap", _choices(cfgmod.OnOverlap)),
    ("data.holdout.source=url", "data.holdout.source", _choices(cfgmod.HoldoutSource)),
    ("data.examples.spellings=true", "data.examples.spellings", _choices(cfgmod.Spellings)),
    ("model.family=qwen4", "model.family", _choices(cfgmod.ModelFamily)),
    ("model.dtype=bf16", "model.dtype", _choices(cfgmod.DType)),
    ("logger.mode=onlin", "logger.mode", _choices(cfgmod.WandbMode)),
    ("stage=nope", "stage", _choices(cfgmod.Stage)),
])
def test_fixed_choice_typo_fails_at_composition(override, key, choices):
    """In-process: what the CLI composes; its exit 2 and one-line form are tests/test_bad_input.py's."""
    with pytest.raises(HydraException) as e:
        compose_config(override)
    said = f"{e.value}\n{e.value.__cause__}"
    assert "expected one of" in said and choices in said and key.split(".")[-1] in said


def test_wrong_type_and_unknown_key_fail_at_composition():
    for override, key in (("data.seed=abc", "data.seed"), ("data.holdout.bogus=1", "bogus")):
        with pytest.raises(HydraException) as e:
            compose_config(override)
        assert key in f"{e.value}\n{e.value.__cause__}"


def test_paths_group_places_run_dirs_and_cache(tmp_path):
    cfg = compose_config(f"paths.output_root={tmp_path}/runs", f"paths.multirun_root={tmp_path}/mr",
                         hydra_node=True)
    assert cfg.hydra.run.dir.startswith(f"{tmp_path}/runs/default/")
    assert cfg.hydra.sweep.dir.startswith(f"{tmp_path}/mr/default/")
    assert make_config("paths.cache_dir=/somewhere").paths.cache_dir == "/somewhere"


@pytest.mark.parametrize("overrides", [["model=qwen3_4b", "model.enable_thinking=true"],
                                       ["model=qwen3_4b", "+model.chat_template_kwargs.enable_thinking=true"]])
def test_thinking_mode_is_one_clear_error(overrides, tmp_path):
    with pytest.raises(SpellingExpError, match="non-thinking") as e:
        validate(compose_config(*overrides), tmp_path / "run")
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()  # refused before anything is written


@pytest.mark.parametrize("overrides,message", [
    (["stages=[data,eval_base]", "eval.n_questions=0"], "eval.n_questions=0: must be >= 1"),
    (["stages=[data,eval_base]", "eval.n_samples=3", "eval/sampling=greedy"], "eval.n_samples"),
    (["stages=[data,train]", "train.resume=/nonexistent/state"], "train.resume=/nonexistent/state"),
    (["stage=data", "+template.mix.styles.shouty=1"], "unknown style 'shouty'"),
])
def test_later_stage_config_errors_fail_before_the_first_stage(overrides, message, tmp_path):
    """A bad eval / train setting is refused before the data stage runs, not after it: every selected
    stage's check runs first (stages.validate, what the CLI runs before the first stage)."""
    with pytest.raises(SpellingExpError) as e:
        validate(compose_config(*overrides), tmp_path / "run")
    assert message in str(e.value) and not (tmp_path / "run").exists()


def test_env_example_lists_every_environment_variable_the_project_reads():
    import re

    text = "\n".join(p.read_text() for p in [*(ROOT / "spelling_exp").rglob("*.py"), *CONF.rglob("*.yaml")])
    read = set(re.findall(r"oc\.env:([A-Z_]+)", text)) | set(re.findall(r"environ(?:\.get)?[\[(]\"([A-Z_]+)\"", text))
    # HOME is the fallback of the cache dir; WANDB_*_DIR are set by the project, per run dir.
    read -= {"HOME", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"}
    listed = set(re.findall(r"^# ([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read and read <= listed, sorted(read - listed)
