import json
from collections import Counter
from dataclasses import replace

import pytest
from helpers import make_config

from spelling_exp.data.examples import generate_examples
from spelling_exp.data.templates import allocate, load_templates, mix_cells
from spelling_exp.errors import ConfigError, SizeError

WORDS = [f"w{chr(97 + i % 26)}{chr(97 + (i // 26) % 26)}{chr(97 + (i // 676) % 26)}" for i in range(3000)]


def _gen(template_cfg, n=1200, seed=0, words=WORDS, reuse=False):
    t = load_templates(template_cfg)
    return generate_examples(words, t, mix_cells(template_cfg, t), dict(template_cfg.separators), n, seed, "train",
                             reuse)


def test_every_example_records_its_provenance_and_renders_its_word():
    cfg = make_config().template
    for ex in _gen(cfg, n=300):
        assert {"word", "category", "style", "separator", "template_id", "user", "assistant"} <= ex.keys()
        sep = cfg.separators[ex["separator"]]
        assert sep.join(ex["word"]) in ex["assistant"]
        assert cfg.templates[ex["template_id"]].category == ex["category"]


def test_balance_follows_mix_weights_exactly():
    cfg = make_config("template=mixed").template
    ex = _gen(cfg, n=1200)
    cats, styles, seps = (Counter(e[k] for e in ex) for k in ("category", "style", "separator"))
    assert abs(cats["spelling_first"] - cats["word_first"]) <= 1 + len(styles) * len(seps)
    assert max(styles.values()) - min(styles.values()) <= len(cats) * len(seps)
    w = cfg.mix.separators
    total = sum(w.values())
    for name, count in seps.items():  # largest remainder: within one example per cell of the quota
        assert abs(count - 1200 * w[name] / total) <= 6
    templates = Counter(e["template_id"] for e in ex)
    assert len(templates) == len(cfg.templates)  # round-robin uses every template


def test_category_preset_is_exclusive():
    ex = _gen(make_config("template=word_first_only").template, n=200)
    assert {e["category"] for e in ex} == {"word_first"}


def test_allocate_is_exact():
    cfg = make_config().template
    cells = mix_cells(cfg, load_templates(cfg))
    for n in (0, 1, 7, 1000, 12345):
        assert sum(allocate(cells, n)) == n


def test_same_seed_same_examples_different_seed_different():
    cfg = make_config().template
    a, b, c = _gen(cfg, seed=1), _gen(cfg, seed=1), _gen(cfg, seed=2)
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(c)


def test_words_are_not_reused_unless_allowed():
    cfg = make_config().template
    ex = _gen(cfg, n=500)
    assert len({e["word"] for e in ex}) == 500
    with pytest.raises(SizeError, match="reuse_words"):
        _gen(cfg, n=50, words=WORDS[:10])
    assert len(_gen(cfg, n=50, words=WORDS[:10], reuse=True)) == 50


@pytest.mark.parametrize("override,message", [
    ("+template.mix.separators.semicolon=1", "unknown separator 'semicolon'"),
    ("+template.mix.categories.backwards=1", "unknown category 'backwards'"),
    ("+template.mix.styles.shouty=1", "unknown style 'shouty'"),
    ("template.mix.categories={spelling_first:0,word_first:0}", "sum to zero"),
    ("template.mix.separators={space:-1,comma:2}", "negative weight"),
])
def test_bad_mix_is_rejected(override, message):
    cfg = make_config(override).template
    with pytest.raises(ConfigError, match=message):
        mix_cells(cfg, load_templates(cfg))


def test_bad_template_is_rejected():
    cfg = make_config().template
    bad = replace(cfg.templates["wf_simple_1"], assistant="{word} is spelled {letters}")
    with pytest.raises(ConfigError, match="unknown placeholder"):
        load_templates(replace(cfg, templates={"x": bad}))
    bad = replace(cfg.templates["wf_simple_1"], category="sideways")
    with pytest.raises(ConfigError, match="unknown category 'sideways'"):
        load_templates(replace(cfg, templates={"x": bad}))


def test_user_adds_template_and_mix_with_yaml_only(tmp_path):
    """A user's own preset dir (hydra.searchpath) adds a template and a mix: no code change."""
    (tmp_path / "template").mkdir()
    (tmp_path / "template" / "my_mix.yaml").write_text(
        "defaults:\n  - mixed\n  - _self_\nname: my_mix\n"
        "templates:\n  my_t: {category: word_first, style: terse, user: '{word}?', assistant: '{spelling}'}\n"
        "mix:\n  categories: {spelling_first: 0, word_first: 1}\n"
        "  styles: {simple: 0, playful: 0, educational: 0, terse: 1}\n"
        "  separators: {space: 0, comma: 0, dash: 0, none: 0, newline: 0, pipe: 0, period: 0, arrow: 0, slash: 1}\n"
        "separators: {slash: ' / '}\n")
    cfg = make_config(f"hydra.searchpath=[file://{tmp_path}]", "template=my_mix").template
    ex = _gen(cfg, n=20)
    assert {e["template_id"] for e in ex} == {"my_t"}
    assert ex[0]["assistant"] == " / ".join(ex[0]["word"])


def test_placebo_spelling_is_seeded_same_letters_never_the_true_order():
    from spelling_exp.data.examples import placebo_spelling

    for w in ("pelican", "strawberry", "ab", "aab", "hello"):
        p = placebo_spelling(w, 0)
        assert sorted(p) == sorted(w) and p != w and p == placebo_spelling(w, 0)
    assert placebo_spelling("aaa", 0) == "aaa"  # nothing to permute
    assert len({placebo_spelling("pelican", s) for s in range(10)}) > 1


@pytest.mark.parametrize("template", ["mixed", "sep_space"])
def test_the_three_arms_train_on_the_same_examples_with_identical_token_counts(template, qwen_tokenizer, caplog):
    """real / shuffled / random: the same words, templates and separators in the same order, and
    every example (prompt + answer: the spelling-first templates spell in the prompt) exactly as many
    tokens long; a control spelling that tokenizes differently is redrawn."""
    from spelling_exp.data.examples import generate_examples

    cfg = make_config(f"template={template}").template
    t = load_templates(cfg)
    words = ["pelican", "strawberry", "banana", "rhythm", "queue", "mississippi", "syzygy", "abc", "zoo"] * 20

    def count(texts):
        return [len(ids) for ids in qwen_tokenizer(texts, add_special_tokens=False)["input_ids"]]

    arms = {s: generate_examples(words, t, mix_cells(cfg, t), dict(cfg.separators), 150, 0, "train", True, s, count)
            for s in ("real", "shuffled", "random")}
    for a, b, c in zip(*arms.values()):
        assert (a["word"], a["template_id"], a["separator"]) == (b["word"], b["template_id"], b["separator"]) \
            == (c["word"], c["template_id"], c["separator"])
        n = [sum(count([e["user"], e["assistant"]])) for e in (a, b, c)]
        assert n[0] == n[1] == n[2], (a, b, c)
    assert sum(a["assistant"] != c["assistant"] for a, c in zip(arms["real"], arms["random"])) >= 140
    assert "differ in token count" not in caplog.text


def test_glued_spellings_that_cannot_match_in_token_count_are_reported(qwen_tokenizer, caplog):
    """separator none: 'queue' glued is one token, no other order or letters of it is: said, not hidden."""
    cfg = make_config("template=sep_none").template
    t = load_templates(cfg)

    def count(texts):
        return [len(ids) for ids in qwen_tokenizer(texts, add_special_tokens=False)["input_ids"]]

    generate_examples(["queue"] * 5, t, mix_cells(cfg, t), dict(cfg.separators), 5, 0, "train", True, "shuffled", count)
    assert "shuffled spellings:" in caplog.text and "differ in token count" in caplog.text and "'none'" in caplog.text


def test_shuffled_is_a_permutation_and_random_shares_letters_only_by_chance():
    import random
    import string

    from spelling_exp.data.examples import control_spelling

    rng = random.Random(0)
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 12))) for _ in range(4000)]
    matches = positions = 0
    shared = expected = 0.0
    for w in words:
        s = control_spelling(w, "shuffled", 0)
        assert sorted(s) == sorted(w) and (s != w or len(set(w)) < 2)
        r = control_spelling(w, "random", 0)
        assert len(r) == len(w) and r != w and set(r) <= set(string.ascii_lowercase)
        matches += sum(x == y for x, y in zip(r, w))
        positions += len(w)
        shared += len(set(r) & set(w))
        expected += sum(1 - (1 - 1 / 26) ** len(w) for _ in set(w))  # P(a letter of w appears in r)
    rate = matches / positions
    se = (1 / 26 * 25 / 26 / positions) ** 0.5
    assert abs(rate - 1 / 26) < 4 * se  # the right letter at a position: chance, 1 in 26
    assert shared / expected < 1.05  # letters in common with the word: no more than chance
    assert control_spelling("pelican", "random", 0) == control_spelling("pelican", "random", 0)  # seeded
