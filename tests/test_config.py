from pathlib import Path

import pytest

from bootdistill.config import load_config, resolve_model
from bootdistill.errors import ConfigError


def test_overrides_and_preset_resolution():
    cfg = resolve_model(load_config(None, ["model.preset=5M", "train.lr_max=2e-3", "train.max_steps=5"]))
    assert (cfg.model.d_model, cfg.model.n_layers, cfg.model.context) == (256, 6, 1024)
    assert cfg.train.lr_max == 2e-3 and cfg.train.lr_min == 1e-4 and cfg.train.batch_tokens == 16384
    assert cfg.train.max_steps == 5


def test_yaml_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  preset: 1M\ntrain:\n  lr_max: 0.001\n")
    cfg = load_config(f, ["train.lr_max=5e-4"])
    assert cfg.model.preset == "1M" and cfg.train.lr_max == 5e-4


@pytest.mark.parametrize("override, message", [
    ("train.lr_mx=1", "did you mean 'lr_max'"),
    ("trian.lr_max=1", "did you mean 'train'"),
    ("train.warmup_steps=abc", "must be an integer"),
    ("train.warmup_steps=-1", "must be >= 0"),
    ("distill.alpha=1.5", "must be in [0, 1]"),
    ("distill.temperature=0", "must be > 0"),
    ("distill.margin=-0.1", "must be >= 0"),
    ("train.precision=fp8", "train.precision .fp8. is unknown"),
    ("distill.policy=bootstraped", "did you mean .bootstrapped."),
    ("distill.loss=kll", "did you mean .kl."),
    ("distill.alpha_schedule=cosine", "valid: constant, step"),
    ("model.preset=3M", "unknown"),
    ("train.compile=maybe", "true or false"),
    ("lr_max", "must look like section.key=value"),
    ("model.arch=lama", "model.arch .lama. is unknown .did you mean .llama.. valid: gpt2, llama"),
    ("model.n_kv_heads=2", "needs model.arch=llama"),
    ("model.init_flops=1e15", "set model.init_from too"),
])
def test_bad_config_values(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve_model(load_config(None, [override]))


def test_kv_heads_must_divide_the_preset_heads():
    cfg = resolve_model(load_config(None, ["model.preset=1M", "model.arch=llama", "model.n_kv_heads=2"]))
    assert cfg.model.n_heads == 8 and cfg.model.n_kv_heads == 2
    with pytest.raises(ConfigError, match=r"model.n_kv_heads \(3\) must divide model.n_heads \(8\)"):
        resolve_model(load_config(None, ["model.preset=1M", "model.arch=llama", "model.n_kv_heads=3"]))


def test_unset_model_is_an_error():
    with pytest.raises(ConfigError, match="model.d_model is not set"):
        resolve_model(load_config(None, []))


def test_bad_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_old_batch_counts_load_as_the_sequences_they_held():
    """eval_batches, final_eval_batches and diag_batches counted batches of train.micro_batch sequences; they load
    as those sequences, and the recipes, now in sequences, keep their runs' names."""
    from bootdistill.experiment import load_recipe

    old = load_config(None, ["train.micro_batch=4", "train.eval_batches=3", "train.final_eval_batches=null",
                             "distill.diag_batches=2"])
    assert (old.train.eval_sequences, old.train.final_eval_sequences, old.distill.diag_sequences) == (12, None, 8)
    with pytest.raises(ConfigError, match="eval_batches .* and train.eval_sequences are both set"):
        load_config(None, ["train.eval_batches=3", "train.eval_sequences=12"])
    with pytest.raises(ConfigError, match="train.eval_batches must be > 0"):
        load_config(None, ["train.eval_batches=0"])
    # the search's archived runs still carry the names their recipes give them
    repo = Path(__file__).resolve().parents[1]
    for recipes, archive in ((["search"], "archive"), (["followup"], "archive-followup"),
                             (["confirm", "confirm-followup"], "archive-confirm"), (["tuned"], "archive-tuned"),
                             (["scale"], "archive-scale"), (["knobs"], "archive-knobs")):
        names = {p.run_dir.name for r in recipes for p in load_recipe(repo / "configs" / "where-it-pays" / f"{r}.yaml")[1]}
        archived = {d.name for d in (repo / "results" / "where-it-pays" / archive).iterdir() if d.is_dir()}
        assert archived and archived <= names, archived - names
