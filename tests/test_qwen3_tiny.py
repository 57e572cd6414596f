"""model=qwen3_tiny: a randomly initialised toy Qwen3 (Qwen3-4B's architecture, offline tokenizer,
non-thinking chat format), built deterministically and cached; +experiment=smoke_qwen3 runs the
whole pipeline on it; eval/sampling=qwen3_nonthinking is Qwen's own sampling."""
import dataclasses
import json
import re
import time

import pytest
from helpers import make_config, run_cli

from spelling_exp.config import SamplingConfig
from spelling_exp.errors import ConfigError
from spelling_exp.model.chat import QWEN3_GENERATION_SUFFIX
from spelling_exp.model.tiny import build_tiny_qwen3, check_random_init, tiny_key, tiny_model_dir
from spelling_exp.storage.io import sha256_file

QWEN3_PROJECTIONS = {"self_attn": ["q_proj", "k_proj", "v_proj", "o_proj"],
                     "mlp": ["gate_proj", "up_proj", "down_proj"]}


@pytest.fixture(scope="module")
def tiny():
    return make_config("model=qwen3_tiny", "lora=all_linear").model


@pytest.fixture(scope="module")
def tiny_dir(tiny, cache_dir):
    return tiny_model_dir(tiny, cache_dir)


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


# ------------------------------------------------------------------ the model and its cache entry
def test_tiny_model_has_qwen3_4b_architecture_at_toy_size(tiny, tiny_dir, cache_dir):
    assert tiny_dir == cache_dir / "models" / tiny_key(tiny) and tiny_dir.name.startswith("qwen3-tiny-")
    c = json.loads((tiny_dir / "config.json").read_text())
    assert c["model_type"] == "qwen3" and c["architectures"] == ["Qwen3ForCausalLM"] and "auto_map" not in c
    assert (c["vocab_size"], c["max_position_embeddings"], c["tie_word_embeddings"]) == (151936, 40960, True)
    theta = c.get("rope_parameters", c)["rope_theta"]  # transformers 5 nests it; 4.x keeps it top-level
    assert (theta, c["rms_norm_eps"], c["hidden_act"]) == (1e6, 1e-6, "silu")
    assert (c["num_hidden_layers"], c["hidden_size"], c["intermediate_size"]) == (2, 64, 128)
    assert (c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]) == (4, 2, 32)  # GQA; 4 x 32 != 64
    assert c["attention_bias"] is False and c["use_sliding_window"] is False
    g = json.loads((tiny_dir / "generation_config.json").read_text())
    assert g["eos_token_id"] == [151645, 151643]  # <|im_end|>, <|endoftext|>
    assert tiny.trust_remote_code is False and str(tiny.tokenizer_source) == "offline"


def test_the_model_dir_carries_its_tokenizer(tiny_dir):
    """Without tokenizer files AutoTokenizer returns an empty tokenizer (end of sequence id 0), and
    vLLM on this dir decodes empty text."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    assert len(tok) > 150_000 and tok.eos_token == "<|im_end|>" and len(tok("pelican")["input_ids"]) >= 1


def test_two_builds_with_the_same_seed_are_byte_identical(tiny, tiny_dir, tmp_path, cache_dir):
    import torch

    rng = torch.random.get_rng_state()
    build_tiny_qwen3(tiny, tmp_path / "a", cache_dir)
    assert torch.equal(torch.random.get_rng_state(), rng), "building must not touch the global RNG"
    assert _files(tmp_path / "a") == {k: v for k, v in _files(tiny_dir).items() if k not in (".complete",
                                                                                            "cache_key.json")}
    other = dataclasses.replace(tiny, random_init=dataclasses.replace(tiny.random_init, seed=1))
    build_tiny_qwen3(other, tmp_path / "b", cache_dir)
    assert (tmp_path / "b/model.safetensors").read_bytes() != (tmp_path / "a/model.safetensors").read_bytes()
    assert (tmp_path / "b/config.json").read_bytes() == (tmp_path / "a/config.json").read_bytes()
    assert tiny_key(other) != tiny_key(tiny) and other.identity() != tiny.identity()


def test_corrupt_cached_model_is_rebuilt_to_the_same_bytes(tiny, tmp_path):
    entry = tiny_model_dir(tiny, tmp_path)
    want = sha256_file(entry / "model.safetensors")
    with open(entry / "model.safetensors", "r+b") as f:
        f.truncate(1000)
    assert tiny_model_dir(tiny, tmp_path) == entry and sha256_file(entry / "model.safetensors") == want
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith((".tmp", ".corrupt"))]


def test_identity_covers_random_init_and_leaves_other_models_alone(tiny):
    assert tiny.identity()["random_init"] == dataclasses.asdict(tiny.random_init)
    assert "random_init" not in make_config("model=smollm2_135m").model.identity()
    assert "random_init" not in make_config("model=qwen3_4b").model.identity()


@pytest.mark.parametrize("change,message", [
    ({"random_init": None}, "model.path=random:qwen3 needs model.random_init"),
    ({"path": "Qwen/Qwen3-4B"}, "model.random_init is set but model.path=Qwen/Qwen3-4B"),
    ({"path": "random:llama"}, "model.path=random:llama: must be random:qwen3"),
    ({"family": "generic"}, "model.family=generic: must be qwen3"),
    ({"tokenizer_source": "auto"}, "model.tokenizer_source=auto: must be offline"),
    ({"num_key_value_heads": 3}, "model.random_init.num_key_value_heads=3: must be a divisor"),
    ({"head_dim": 15}, "model.random_init.head_dim=15: must be even"),
    ({"num_hidden_layers": 0}, "model.random_init.num_hidden_layers=0: must be >= 1"),
])
def test_random_init_misconfigurations_are_refused(tiny, change, message):
    sizes = {k: v for k, v in change.items() if hasattr(tiny.random_init, k) and k != "seed"}
    m = dataclasses.replace(tiny, **{k: v for k, v in change.items() if k not in sizes})
    if sizes:
        m = dataclasses.replace(m, random_init=dataclasses.replace(tiny.random_init, **sizes))
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_random_init(m)


# ------------------------------------------------------------------ prompts, LoRA, adapter
@pytest.mark.slow  # builds / loads a model or a full tokenizer: 5-20 s
def test_prompts_end_with_empty_think_block_and_training_prompt_ids_are_eval_prompt_ids(tiny, cache_dir):
    from spelling_exp.evaluation.backends.hf import HFBackend
    from spelling_exp.training.dataset import tokenize_examples

    cfg = make_config("+experiment=smoke_qwen3")
    backend = HFBackend(cfg.model, cfg.eval.sampling, 16, cache_dir=str(cache_dir))
    questions = [p.replace("{word}", "pelican").replace("{ordinal}", "3rd").replace("{k}", "3").replace("{letter}", "e")
                 for ps in cfg.eval.phrasings.values() for p in ps]
    assert all(p.endswith("<|im_start|>assistant\n" + "<think>\n\n</think>\n\n") for p in backend.render(questions))
    examples = [{"id": name, "user": t.user.replace("{word}", "pelican").replace("{spelling}", "p e l i c a n"),
                 "assistant": t.assistant.replace("{word}", "pelican").replace("{spelling}", "p e l i c a n")}
                for name, t in cfg.template.templates.items()]
    rows = tokenize_examples(examples, backend.tok, cfg.model, 512)
    for ex in examples:
        row = rows[ex["id"]]
        prompt_ids = [i for i, m in zip(row["input_ids"], row["completion_mask"]) if m == 0]
        rendered = backend.render([ex["user"]])
        # exactly as HFBackend.generate tokenizes its batch
        assert prompt_ids == backend.tok(rendered, add_special_tokens=False, padding=True)["input_ids"][0], ex["id"]
        assert row["input_ids"][:len(prompt_ids)] == prompt_ids
        assert backend.prompt_lengths(rendered) == [len(prompt_ids)]
        assert backend.tok.decode(prompt_ids).endswith(QWEN3_GENERATION_SUFFIX)
        assert backend.tok.decode(row["input_ids"][len(prompt_ids):]) == ex["assistant"] + "<|im_end|>"


@pytest.fixture(scope="module")
def peft_model(tiny, tiny_dir, cache_dir):
    from spelling_exp.training.model import load_trainable_model

    lora = make_config("model=qwen3_tiny", "lora=all_linear").lora
    return load_trainable_model(tiny, lora, "peft", str(cache_dir), 96, 0, False)


@pytest.mark.slow  # builds / loads a model or a full tokenizer: 5-20 s
def test_all_linear_lora_finds_every_qwen3_projection_in_every_layer(tiny, peft_model):
    model, _ = peft_model
    layers = model.base_model.model.model.layers
    assert len(layers) == tiny.random_init.num_hidden_layers
    for i, layer in enumerate(layers):
        for block, names in QWEN3_PROJECTIONS.items():
            for name in names:
                assert hasattr(getattr(getattr(layer, block), name), "lora_A"), f"layer {i} {block}.{name}"
    wrapped = [n for n, mod in model.named_modules() if hasattr(mod, "lora_A") and n.endswith("_proj")]
    assert len(wrapped) == 7 * tiny.random_init.num_hidden_layers
    r, h, i_, d = 16, tiny.random_init.hidden_size, tiny.random_init.intermediate_size, tiny.random_init.head_dim
    q, kv = tiny.random_init.num_attention_heads * d, tiny.random_init.num_key_value_heads * d
    shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, i_), (h, i_), (i_, h)]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == tiny.random_init.num_hidden_layers * sum(r * (a + b) for a, b in shapes)


@pytest.mark.slow  # builds / loads a model or a full tokenizer: 5-20 s
def test_adapter_saves_reloads_and_merges_in_float32(tiny, peft_model, cache_dir, tmp_path):
    import torch
    from peft import PeftModel

    from spelling_exp.model.loading import load_model

    model, tok = peft_model
    torch.manual_seed(1)
    with torch.no_grad():  # PEFT starts B at 0 (a no-op adapter); give it something to carry
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.eval()
    ids = tok(["<|im_start|>user\nSpell pelican.<|im_end|>\n" + QWEN3_GENERATION_SUFFIX], return_tensors="pt",
              add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        trained = model(input_ids=ids).logits
        with model.disable_adapter():
            base = model(input_ids=ids).logits
    assert trained.dtype == torch.float32 and not torch.allclose(trained, base, atol=1e-4)
    model.save_pretrained(str(tmp_path / "adapter"))
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert set(saved["target_modules"]) == {n for names in QWEN3_PROJECTIONS.values() for n in names}

    reloaded, _, _ = load_model(tiny, cache_dir, adapter_path=str(tmp_path / "adapter"))
    merged, _, _ = load_model(tiny, cache_dir, adapter_path=str(tmp_path / "adapter"), merge_adapter=True)
    assert isinstance(reloaded, PeftModel) and not isinstance(merged, PeftModel)
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, trained, atol=1e-6)
        assert torch.allclose(merged(input_ids=ids).logits, trained, atol=1e-5)


# ------------------------------------------------------------------ thinking mode stays off
# (overrides, refused by us with one line; else Hydra's composition error naming the key)
THINKING = [
    (["model.enable_thinking=true"], True),
    (["+model.chat_template_kwargs.enable_thinking=True"], True),
    (["++model.chat_template_kwargs.enable_thinking=true"], True),
    (["+model.chat_template_kwargs.enable_thinking=yes"], True),
    (["+model.chat_template_kwargs={enable_thinking:true}"], True),
    (["model.family=generic"], True),  # would render without the non-thinking rules
    (["model.chat_template_kwargs.enable_thinking=true"], False),  # Hydra: "use +model.chat_template_kwargs..."
    (["model.chat_template_kwargs={enable_thinking:true}"], False),
]


@pytest.mark.parametrize("overrides,ours", THINKING,
                         ids=lambda v: " ".join(v) if isinstance(v, list) else ("ours" if v else "hydra"))
def test_thinking_refused_by_the_cli_before_any_model_loads(overrides, ours, tmp_path):
    """The real CLI with the whole smoke_qwen3 pipeline selected: exit 2 before the first stage,
    nothing built in the cache (no tokenizer, no model) and no run dir. ~2 s each."""
    r = run_cli("+experiment=smoke_qwen3", *overrides, f"output_dir={tmp_path}/run", f"hydra.run.dir={tmp_path}/h",
                cache=tmp_path / "cache")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and ("enable_thinking" in r.stderr or "non-thinking" in r.stderr), r.stderr
    if ours:
        assert r.stderr.startswith("spelling_exp: error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


# ------------------------------------------------------------------ sampling presets
def test_sampling_presets_say_whose_settings_they_are():
    assert make_config().eval.sampling == SamplingConfig(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0)
    qwen = SamplingConfig(temperature=0.7, top_p=0.8, top_k=20, min_p=0.0)
    assert make_config("eval/sampling=qwen3_nonthinking").eval.sampling == qwen
    assert make_config("+experiment=spelling_lora", "eval/sampling=qwen3_nonthinking").eval.sampling == qwen
    assert make_config("+experiment=smoke_qwen3").eval.sampling == make_config().eval.sampling


# ------------------------------------------------------------------ the whole pipeline
@pytest.mark.slow
def test_smoke_qwen3_end_to_end(tmp_path):
    from spelling_exp.storage.io import iter_jsonl

    out, cache = tmp_path / "run", tmp_path / "cache"  # a cold cache, as in CI
    t0 = time.perf_counter()
    r = run_cli("+experiment=smoke_qwen3", f"output_dir={out}", f"hydra.run.dir={tmp_path}/h", cache=cache)
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-4000:]
    assert (out / "report" / "report.html").is_file() and (out / "report" / "report.md").is_file()
    assert "== Answer: base vs LoRA adapter" in r.stdout
    info = json.loads((out / "train" / "adapter" / "train_info.json").read_text())
    assert (info["steps"], info["backend"], info["precision"]) == (4, "peft", "fp32")
    assert [p.name for p in (cache / "models").iterdir() if p.is_dir()] == [tiny_key(make_config(
        "model=qwen3_tiny").model)]
    for stage in ("eval_base", "eval_adapter"):
        rows = list(iter_jsonl(out / stage / "predictions.jsonl"))
        assert rows and all(p["prompt_rendered"].endswith(QWEN3_GENERATION_SUFFIX) for p in rows)
    print(f"smoke_qwen3 wall time: {elapsed:.1f} s")
    assert elapsed < 120
