"""Template analysis: the data report the data stage writes (data/report/), and the sweep
report's "Accuracy by template" section. Unit tests on hand-built rows and fake job dirs are
fast; the tests on a real small data build run the CLI once (marked slow, like test_data_stage)."""
import json
import logging
import re

import pytest
from helpers import make_config, run_cli
from omegaconf import OmegaConf

from spelling_exp.analysis import data_report as dr

PNGS = ("examples_per_cell.png", "tokens_and_shares.png")


# ------------------------------------------------------------------------------ hand-built rows (fast)
def _row(i, category, style, sep, template, word="pelican"):
    joiner = {"space": " ", "dash": "-", "newline": "\n"}[sep]
    spelled = joiner.join(word)
    user = f"Spell {word}." if category == "word_first" else f"Which word is {spelled}?"
    assistant = f"{word}: {spelled}" if category == "word_first" else f"{spelled} spells {word}."
    return {"id": f"train-{i:06d}", "word": f"{word}{i}", "category": category, "style": style, "separator": sep,
            "template_id": template, "user": user, "assistant": assistant,
            "n_tokens": len(user.split()) + len(assistant.split()) + 5, "split": "train"}


LAYOUT = {"name": "hand", "separators": {"space": " ", "dash": "-", "newline": "\n"},
          "templates": [{"id": "sf_a", "category": "spelling_first", "style": "simple"},
                        {"id": "wf_a", "category": "word_first", "style": "simple"}],
          "cells": [{"category": c, "style": "simple", "separator": s, "weight": 1 / 6}
                    for c in ("spelling_first", "word_first") for s in ("space", "dash", "newline")]}


def _hand_data(tmp_path, n=30):
    """A data folder whose (word_first, simple, newline) cell of the mix got no example."""
    d = tmp_path / "data"
    d.mkdir()
    cells = [(c, s) for c in ("spelling_first", "word_first") for s in ("space", "dash", "newline")
             if (c, s) != ("word_first", "newline")]
    rows = [_row(i, c, "simple", s, "sf_a" if c == "spelling_first" else "wf_a")
            for i, (c, s) in enumerate(cells[i % len(cells)] for i in range(n))]
    (d / "examples_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "examples_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    return d, rows


def _words(texts):
    return [len(t.split()) for t in texts]


def test_report_from_hand_built_rows(tmp_path):
    d, rows = _hand_data(tmp_path)
    html = dr.write_data_report(d, tmp_path / "out", layout=LAYOUT, count_tokens=_words)
    s = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert sum(c["n"] for c in s["cells"]["train"]) == len(rows) == s["n_examples"]["train"]
    # every cell of the mix is listed, the empty one with 0 examples
    cells = {(c["category"], c["separator"]): c["n"] for c in s["cells"]["train"]}
    assert len(cells) == 6 and cells[("word_first", "newline")] == 0
    md = (tmp_path / "out" / "data_report.md").read_text()
    assert re.search(r"^\| total \|  \|( \d+ \|){3} 30 \|$", md, re.M), md
    # answer share = assistant words / (user + assistant words) here; overhead = 5 for every example
    for e in s["by_template"]:
        assert 0 < e["answer_share"]["mean"] < 1
    r = rows[0]
    a, u = len(r["assistant"].split()), len(r["user"].split())
    first = [e for e in s["by_template"] if e["template_id"] == r["template_id"]][0]
    assert first["answer_share"]["min"] <= a / (a + u) <= first["answer_share"]["max"]
    assert s["answer_share"]["chat_overhead_tokens"] == [5] and s["answer_share"]["sampled"] == len(rows)
    # one real example per cell, line breaks made visible
    assert "⏎" in md and "## What a format looks like" in md
    text = html.read_text()
    assert text.count("<table>") >= 4 and text.count("src='data:image/png;base64,") == 2
    assert all((tmp_path / "out" / p).is_file() for p in PNGS)


def test_sample_takes_the_first_rows_of_each_template_and_separator(tmp_path):
    _, rows = _hand_data(tmp_path, n=60)
    sample = dr.sample_for_shares(rows, per_group=2)
    pairs = [(r["template_id"], r["separator"]) for r in sample]
    assert len(pairs) == 2 * 5 and all(pairs.count(p) == 2 for p in set(pairs))
    for pair in set(pairs):  # the first two of each pair, in file order
        assert [r for r in sample if (r["template_id"], r["separator"]) == pair] == [
            r for r in rows if (r["template_id"], r["separator"]) == pair][:2]


def test_a_failing_plot_or_tokenizer_never_fails_the_report(tmp_path, monkeypatch, caplog):
    d, _ = _hand_data(tmp_path)

    def boom(*_a, **_k):
        raise RuntimeError("no plot today")

    monkeypatch.setattr(dr, "plot_cell_heatmap", boom)
    with caplog.at_level(logging.WARNING):
        html = dr.write_data_report(d, tmp_path / "out", layout=LAYOUT, count_tokens=boom)
    assert "plot examples_per_cell left out" in caplog.text and "answer-token share not counted" in caplog.text
    assert html.is_file() and not (tmp_path / "out" / "examples_per_cell.png").exists()
    md = (tmp_path / "out" / "data_report.md").read_text()
    assert "## Examples per cell" in md and "Answer-token share**: not counted" in md


def test_data_stage_survives_a_failing_report(tmp_path, monkeypatch, caplog):
    from spelling_exp.stages.context import RunContext
    from spelling_exp.stages.data import write_data_report_for

    cfg = make_config(f"paths.cache_dir={tmp_path / 'cache'}")
    (tmp_path / "run" / "data").mkdir(parents=True)

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(dr, "write_data_report", boom)
    with caplog.at_level(logging.WARNING):
        write_data_report_for(RunContext(cfg, tmp_path / "run"), "key")
    assert "data report not written (OSError: disk full)" in caplog.text
    assert not (tmp_path / "run" / "data" / "report").exists()


def test_template_layout_lists_the_mix_cells():
    from spelling_exp.stages.data import template_layout

    lay = template_layout(make_config().template)
    seps = {c["separator"] for c in lay["cells"]}
    assert lay["name"] == "mixed" and "none" not in seps and {"space", "comma", "dash"} <= seps
    assert len(lay["cells"]) == 2 * 3 * len(seps) and all(c["weight"] > 0 for c in lay["cells"])


# ------------------------------------------------------------------------------ a real small build (slow)
@pytest.fixture(scope="module")
def built(tmp_path_factory, cache_dir):
    run = tmp_path_factory.mktemp("run") / "a"
    r = run_cli("stage=data", "data=small", f"output_dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "data report written" in r.stdout + r.stderr
    return run


@pytest.mark.slow
def test_real_build_report_counts_cells_and_shares(built):
    from spelling_exp.data.templates import load_templates, mix_cells

    rep = built / "data" / "report"
    for f in (*dr.REPORT_FILES, *PNGS):
        assert (rep / f).is_file(), f
    s = json.loads((rep / "data_report.json").read_text())
    manifest = json.loads((built / "data" / "manifest.json").read_text())
    n_train = manifest["counts"]["train_examples"]
    assert sum(c["n"] for c in s["cells"]["train"]) == n_train == s["n_examples"]["train"]
    assert sum(c["n"] for c in s["cells"]["val"]) == manifest["counts"]["val_examples"]
    md = (rep / "data_report.md").read_text()
    assert re.search(rf"^\| total \| .*\| {n_train} \|$", md, re.M)
    template = make_config("data=small").template
    mix = {(c.category, c.style, c.separator) for c in mix_cells(template, load_templates(template)) if c.weight > 0}
    assert {(c["category"], c["style"], c["separator"]) for c in s["cells"]["train"]} == mix
    # answer-token share strictly between 0 and 1, everywhere; the chat template adds a constant
    shares = [e["answer_share"] for e in s["by_template"] + s["by_separator"]]
    assert shares and all(0 < q["min"] <= q["mean"] <= q["max"] < 1 for q in shares)
    assert 0 < s["answer_share"]["mean_weighted"] < 1 and len(s["answer_share"]["chat_overhead_tokens"]) == 1
    html = (rep / "data_report.html").read_text()
    assert "<table>" in html and html.count("src='data:image/png;base64,") == len(PNGS)
    assert not re.search(r"src=['\"](?!data:)", html)  # self-contained
    # the examples shown are real training rows
    rows = [json.loads(line) for line in (built / "data" / "examples_train.jsonl").open()]
    users = {r["user"].replace("\n", "⏎").replace("|", "\\|") for r in rows}
    shown = md.split("## What a format looks like", 1)[1]
    lines = [ln for ln in shown.splitlines() if ln.startswith("| ") and not ln.startswith("| category")]
    assert len(lines) == len(mix)
    assert all(ln.split(" | ")[4] in users for ln in lines)


@pytest.mark.slow
def test_report_comes_from_the_cache_on_a_data_cache_hit(built, tmp_path):
    r = run_cli("stage=data", "data=small", f"output_dir={tmp_path}/b")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "data reused from cache" in r.stdout + r.stderr and "data report reused from cache" in r.stdout + r.stderr
    for f in (*dr.REPORT_FILES, *PNGS):
        assert (tmp_path / "b" / "data" / "report" / f).read_bytes() == (built / "data" / "report" / f).read_bytes()


# ------------------------------------------------------------------------------ sweep: accuracy by template (fast)
MIXED_SEPS = {"space": 1.0, "comma": 1.0, "dash": 1.0, "none": 0.0, "newline": 0.5}


def _job(sweep, num, overrides, name, categories, separators, acc, base=0.2):
    """A finished job dir with the files the sweep report reads, and its .hydra/config.yaml template."""
    j = sweep / str(num)
    (j / ".hydra").mkdir(parents=True)
    (j / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    OmegaConf.save(OmegaConf.create({"template": {"name": name, "mix": {
        "categories": categories, "styles": {"simple": 1.0, "playful": 1.0}, "separators": separators}}}),
        j / ".hydra" / "config.yaml")
    (j / "job_result.json").write_text(json.dumps({"status": "complete"}))
    (j / "eval_adapter").mkdir()
    tasks = {t: {"strict": {"n": 100, "base": base, "adapter": a, "diff": a - base, "ci95": [a - base - 0.1,
                                                                                             a - base + 0.1],
                            "p": 0.5, "test": "mcnemar_exact"},
                 "format": {"no_answer": {"diff": 0.0}}, "no_answer": {"base": 0.1, "adapter": 0.1}}
             for t, a in (("position", acc), ("count", acc / 2))}
    (j / "eval_adapter" / "metrics.json").write_text(json.dumps(
        {"tasks": {t: {"accuracy": {"ci95": [e["strict"]["adapter"] - 0.05, e["strict"]["adapter"] + 0.05]}}
                   for t, e in tasks.items()}, "meta": {"split": "validation"}}))
    (j / "compare").mkdir()
    (j / "compare" / "comparison.json").write_text(json.dumps({"adapter_dir": str(j / "eval_adapter"),
                                                               "tasks": tasks}))


def test_template_mix_sweep_has_an_accuracy_by_template_section(tmp_path):
    from spelling_exp.analysis.sweep_report import write_sweep_report

    sweep = tmp_path / "template_mix"
    presets = (("spelling_first_only", {"spelling_first": 1.0, "word_first": 0.0}, 0.30),
               ("word_first_only", {"spelling_first": 0.0, "word_first": 1.0}, 0.40),
               ("mixed", {"spelling_first": 1.0, "word_first": 1.0}, 0.50))
    for n, (name, cats, acc) in enumerate(presets):
        _job(sweep, n, ["+experiment=smoke", f"template={name}"], name, cats, MIXED_SEPS, acc)
    write_sweep_report(sweep)
    md = (sweep / "comparison.md").read_text()
    assert "## Accuracy by template" in md and "![Accuracy by template](comparison_template.png)" in md
    section = md.split("## Accuracy by template", 1)[1]
    assert ("| 0 | spelling_first_only | spelling_first | simple, playful | space (1), comma (1), dash (1), "
            "newline (0.5) | 30.0% [25.0, 35.0] | 15.0% [10.0, 20.0] |") in section
    assert "| 2 | mixed | spelling_first, word_first |" in section
    assert (sweep / "comparison_template.png").stat().st_size > 5000
    html = (sweep / "comparison.html").read_text()
    assert html.count("src='data:image/png;base64,") == 2  # accuracy vs template, and this section's plot
    t = json.loads((sweep / "comparison.json").read_text())["templates"]
    assert [e["preset"] for e in t] == ["spelling_first_only", "word_first_only", "mixed"]
    assert t[1]["tasks"]["position"]["adapter_ci95"] == pytest.approx([0.35, 0.45])


def test_one_preset_with_different_separators_is_labelled_by_its_separators(tmp_path):
    from spelling_exp.analysis.sweep_report import collect_rows, template_rows, write_sweep_report

    sweep = tmp_path / "seps"
    cats = {"spelling_first": 1.0, "word_first": 1.0}
    for n, sep in enumerate(("space", "dash")):
        one_hot = {**dict.fromkeys(MIXED_SEPS, 0.0), sep: 1.0}
        override = "template.mix.separators={" + ",".join(f"{k}:{v:g}" for k, v in one_hot.items()) + "}"
        _job(sweep, n, [override], "mixed", cats, one_hot, 0.3 + 0.1 * n)
    write_sweep_report(sweep)
    rows, swept, _ = collect_rows(sweep)
    assert swept == ["template.mix.separators"]
    labels = [e["label"] for e in template_rows(sweep, rows, swept)]
    assert labels == ["mixed\nseparators: space", "mixed\nseparators: dash"]
    md = (sweep / "comparison.md").read_text()
    assert "| 1 | mixed | spelling_first, word_first | simple, playful | dash |" in md


def test_no_template_section_when_the_template_does_not_vary(tmp_path):
    from spelling_exp.analysis.sweep_report import write_sweep_report

    sweep = tmp_path / "rank"
    for n, r in enumerate((4, 8)):
        _job(sweep, n, [f"lora.r={r}"], "mixed", {"spelling_first": 1.0, "word_first": 1.0}, MIXED_SEPS, 0.3)
    write_sweep_report(sweep)
    assert "Accuracy by template" not in (sweep / "comparison.md").read_text()
    assert not (sweep / "comparison_template.png").exists()
    assert json.loads((sweep / "comparison.json").read_text())["templates"] == []


def test_separators_sweep_trains_on_one_separator_per_job():
    """Each swept preset zeroes every other separator of the library (dicts merge with mixed's
    weights); composing one of them for real shows that everything else stays as in mixed."""
    from helpers import CONF

    sweep = OmegaConf.load(CONF / "sweep" / "separators.yaml")
    values = str(sweep.hydra.sweeper.params["template"]).split(",")
    assert sweep.eval.split == "validation" and len(values) >= 5 and "sep_none" in values
    library = set(OmegaConf.load(CONF / "template" / "_library.yaml").separators)
    for v in values:
        preset = OmegaConf.load(CONF / "template" / f"{v}.yaml")
        assert list(preset.defaults) == ["mixed", "_self_"] and preset.name == v
        assert set(preset.mix.separators) == library
        assert [k for k, w in preset.mix.separators.items() if w > 0] == [v.removeprefix("sep_")]
    t = make_config("template=sep_dash").template
    assert [k for k, w in t.mix.separators.items() if w > 0] == ["dash"]
    mixed = make_config().template
    assert (t.mix.categories, t.mix.styles, t.templates) == (mixed.mix.categories, mixed.mix.styles, mixed.templates)
