"""Typed config schema, registered in Hydra's ConfigStore.

The primary config (conf/config.yaml) starts from ``spelling_exp_schema``, so every group
(model, data, template, lora, eval, train, logger) is merged into one of these dataclasses:
an unknown key or a wrong type fails at composition with one clear line.

This module imports only the standard library, hydra and omegaconf, so ``--help`` and
``--cfg job`` never pay for torch/transformers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ModelConfig:
    name: str = MISSING
    # "qwen3" turns on the non-thinking chat rules; "smollm2" / "generic" use the model's template.
    family: str = "generic"
    # Hub id ("Qwen/Qwen3-4B"), a local directory, or pkg://<package> for files shipped in a wheel.
    path: str = MISSING
    gguf_file: str | None = None
    revision: str | None = None
    # auto: local/HF cache, then hub if reachable, then offline rebuild (Qwen3); hub; offline.
    tokenizer_source: str = "auto"
    trust_remote_code: bool = False
    dtype: str = "auto"
    device: str = "auto"
    adapter_path: str | None = None
    # None means "whatever the chat template does"; set it to make the choice explicit.
    system_prompt: str | None = None
    # Must stay false: Qwen3 always runs in non-thinking mode (checked before anything loads).
    enable_thinking: bool = False
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TokenRuleConfig:
    """Which vocabulary entries count as English training words. See tokens.py."""
    strip_leading_space: bool = True
    ascii_letters_only: bool = True
    min_length: int = 3
    max_length: int = 20
    lowercase: bool = True


@dataclass
class ExamplesConfig:
    n_train: int = 20000
    n_val: int = 500
    # Training words are drawn without replacement; reuse lets n_train exceed the word count.
    reuse_words: bool = False


@dataclass
class HoldoutConfig:
    # english_words: the `english-words` PyPI package (lists below); file: one word per line.
    source: str = "english_words"
    lists: list[str] = field(default_factory=lambda: ["web2"])
    path: str | None = None
    min_length: int = 4
    max_length: int = 12
    # Keep only words the model's tokenizer splits into >= this many tokens (1 = no filter).
    min_tokens: int = 2
    # drop: silently remove training words from the candidates; error: refuse a contaminated list.
    on_overlap: str = "drop"
    # Words containing any of these are dropped (web2 contains slurs we do not want in prompts).
    exclude_substrings: list[str] = field(default_factory=lambda: ["nigger", "nigga", "faggot"])
    n_validation: int = 200
    n_test: int = 1000


@dataclass
class BatchingConfig:
    batch_size: int = 16
    # Examples whose token lengths fall in the same window of (tolerance + 1) tokens batch together.
    length_tolerance: int = 2
    shuffle_buffer: int = 4096


@dataclass
class DataConfig:
    seed: int = 0
    cache_dir: str = "${oc.env:SPELLING_EXP_CACHE_DIR,${oc.env:HOME,.}/.cache/spelling_exp}"
    tokens: TokenRuleConfig = field(default_factory=TokenRuleConfig)
    examples: ExamplesConfig = field(default_factory=ExamplesConfig)
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)


@dataclass
class TemplateSpec:
    category: str = MISSING  # spelling_first | word_first
    style: str = MISSING  # simple | playful | educational | ...
    user: str = MISSING  # placeholders: {word}, {spelling}
    assistant: str = MISSING


@dataclass
class TemplateMix:
    categories: dict[str, float] = field(default_factory=dict)
    styles: dict[str, float] = field(default_factory=dict)
    separators: dict[str, float] = field(default_factory=dict)


@dataclass
class TemplateConfig:
    name: str = MISSING
    templates: dict[str, TemplateSpec] = field(default_factory=dict)
    separators: dict[str, str] = field(default_factory=dict)
    mix: TemplateMix = field(default_factory=TemplateMix)


@dataclass
class LoraConfig:
    name: str = "default"
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    use_rslora: bool = False
    use_dora: bool = False


@dataclass
class TrainConfig:
    backend: str = "auto"  # auto | peft | unsloth
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int = 128
    seed: int = 0
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    gradient_checkpointing: bool = False
    save_steps: int = 50
    save_total_limit: int = 3
    eval_steps: int = 0  # > 0: loss on the validation spelling examples every N steps
    log_steps: int = 5
    resume: str = "auto"  # auto | never | <checkpoint path>
    # Reuse a finished adapter trained with identical data/model/LoRA/train settings.
    use_cache: bool = True


@dataclass
class SamplingConfig:
    greedy: bool = False
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    min_p: float = 0.0


@dataclass
class EvalConfig:
    name: str = "default"
    tasks: list[str] = field(default_factory=lambda: ["position", "count"])  # + "length" (optional)
    split: str = "test"  # hold-out split: test | validation
    n_questions: int = 200  # per task
    seed: int = 0
    position_strata: dict[str, float] = field(default_factory=lambda: {"first": 1.0, "middle": 1.0, "last": 1.0})
    last_as_word: float = 0.5
    count_strata: dict[str, float] = field(default_factory=lambda: {"0": 1.0, "1": 1.0, "2": 1.0, "3+": 1.0})
    phrasings: dict[str, list[str]] = field(default_factory=dict)
    n_samples: int = 1  # replies per question
    batch_size: int = 16
    max_new_tokens: int = 48
    backend: str = "hf"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # Reuse a finished evaluation with the same key (model, adapter, questions, sampling) from the cache.
    use_cache: bool = True


@dataclass
class CompareConfig:
    # Eval directories to compare; null means <run_dir>/eval_base and <run_dir>/eval_adapter.
    base: str | None = None
    adapter: str | None = None
    n_bootstrap: int = 10000
    seed: int = 0


@dataclass
class LoggerConfig:
    name: str = "none"  # none | wandb
    project: str = "spelling-exp"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    run_name: str | None = None
    mode: str = "offline"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    # One stage by name (stage=data), or null to run `stages` in order.
    stage: str | None = None
    stages: list[str] = field(default_factory=lambda: ["data"])
    experiment_name: str = "default"
    # Where the stage writes; null means Hydra's run dir.
    output_dir: str | None = None
    # Names the multirun dir (multirun/<experiment>/<sweep_id>); a fixed id makes reruns resumable.
    sweep_id: str | None = None
    # stage=compare with a sweep dir: cross-run comparison report of that sweep.
    sweep_dir: str | None = None
    # torch threads per job; null = automatic (cores / parallel jobs under the joblib launcher).
    num_threads: int | None = None


def _sweep_name(sweep_id: Any) -> str:
    from datetime import datetime

    return str(sweep_id) if sweep_id not in (None, "", "None", "null") else datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def register_configs() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("spelling_exp.sweep_name"):
        OmegaConf.register_new_resolver("spelling_exp.sweep_name", _sweep_name, use_cache=True)
        OmegaConf.register_new_resolver("spelling_exp.mul", lambda a, b: a * b)
    cs = ConfigStore.instance()
    cs.store(name="spelling_exp_schema", node=Config)
    # The top-level schema types every group: model, data, template, lora, eval, train, logger.


def selected_stages(cfg: Any) -> list[str]:
    return [cfg.stage] if cfg.stage else list(cfg.stages)
