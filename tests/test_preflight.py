"""Every bad value is caught before compute is spent: at config load, by `experiment --dry-run`, and before a
run's first step."""

import pytest
import yaml

from conftest import run_main, tiny_overrides, write_wikitext
from test_experiment import write_recipe


def error_line(r) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[-1]


def test_config_literals_match_the_registries():
    import typing

    from bootdistill.config import DistillConfig
    from bootdistill.distill.policies import ALPHA_SCHEDULES, POLICIES

    hints = typing.get_type_hints(DistillConfig)  # distill.loss and policy are checked against their registries
    assert hints["policy"] is str and "bootstrapped" in POLICIES
    assert set(typing.get_args(hints["alpha_schedule"])) == set(ALPHA_SCHEDULES)


@pytest.mark.parametrize("distill, message", [
    ({"loss": "kll"}, "did you mean 'kl'"),
    ({"policy": "bootstraped"}, "did you mean 'bootstrapped'"),
    ({"alpha_schedule": "linear"}, "distill.alpha_schedule 'linear' is unknown"),
    ({"policy": "fixed"}, "needs distill.kd_steps"),  # only the policy knows
    ({"loss": "topk_kl"}, "topk_kl"),  # only the loss knows: it needs top_k
])
def test_dry_run_catches_what_a_real_run_would(tiny_corpus, tmp_path, distill, message):
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", tiny_corpus, out, tmp_path / "prep",
                          bad={"extends": "boot", "distill": distill})
    assert message in error_line(run_main("experiment", str(recipe), "--dry-run"))
    if distill.get("loss") == "topk_kl":  # the real run fails as early: before the teacher trains
        assert message in error_line(run_main("experiment", str(recipe)))
    assert not out.exists() and not (tmp_path / "prep").exists()


def test_bad_loss_in_train_claims_nothing(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    args = tiny_overrides(tiny_corpus, out, tmp_path / "prep", **{"distill.policy": "kd", "distill.teacher": str(tmp_path),
                                                                   "distill.loss": "topk_kl"})
    assert "topk_kl" in error_line(run_main("train", *args))
    assert not out.exists()


def test_unfinished_or_missing_teacher(tiny_corpus, tmp_path):
    half = tmp_path / "half"
    (half / "checkpoints").mkdir(parents=True)
    (half / "config.yaml").write_text("{}")
    for teacher, message in ((half, "has not finished"), (tmp_path / "ghost", "does not exist")):
        out = tmp_path / "student"
        args = tiny_overrides(tiny_corpus, out, tmp_path / "prep", **{"distill.policy": "kd", "distill.teacher": str(teacher)})
        assert message in error_line(run_main("train", *args))
        assert not out.exists() and not (tmp_path / "prep").exists()


def test_short_validation_split_is_found_before_training(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_wikitext(corpus / "wiki.train.raw", 60, seed=1)
    (corpus / "wiki.valid.raw").write_text(" \n = Tiny = \n \n a few words only . \n")
    write_wikitext(corpus / "wiki.test.raw", 12, seed=3)
    out = tmp_path / "run"
    line = error_line(run_main("train", *tiny_overrides(corpus, out, tmp_path / "prep")))
    assert "val split" in line and "model.context 32" in line
    assert not out.exists()
    recipe = write_recipe(tmp_path / "r.yaml", corpus, tmp_path / "out", tmp_path / "prep")
    assert "val split" in error_line(run_main("experiment", str(recipe)))
    assert not (tmp_path / "out").exists()


def test_unwritable_output_is_found_before_data_is_prepared(tiny_corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    line = error_line(run_main("train", *tiny_overrides(tiny_corpus, blocker / "run", tmp_path / "prep")))
    assert "is a file" in line
    assert not (tmp_path / "prep").exists()
    recipe = yaml.safe_load(write_recipe(tmp_path / "r.yaml", tiny_corpus, blocker / "out", tmp_path / "prep").read_text())
    assert recipe["out_dir"].endswith("file/out")
    assert "is a file" in error_line(run_main("experiment", str(tmp_path / "r.yaml"), "--dry-run"))
