"""The README as a user reads it: every command in it runs as written (on a tiny corpus in ../shared/corpus),
and every path it names exists. Left out: the two long commands (demo.sh, test.sh), the GPU check and the
search on a GPU (they need a GPU machine), and the torchrun examples (8 processes each;
tests/test_distributed.py runs torchrun on 2)."""

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO, save_teacher

README = (REPO / "README.md").read_text()
LONG = {"bash scripts/demo.sh", "bash scripts/test.sh", "bash benchmarks/gpu_check.sh",
        "GPU_CHECK_TASK=where-it-pays bash benchmarks/gpu_check.sh"}


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command and command not in LONG and not command.startswith((". ", "torchrun ")):  # `. .venv/bin/activate`: the PATH below
                commands.append(command)
    return commands


def test_readme_lists_the_usual_commands():
    commands = readme_commands()
    assert any(c.startswith("bootdistill train -c configs/") for c in commands)
    assert sum(c.startswith("bootdistill ") for c in commands) >= 10


def test_every_readme_command_runs_as_written(tiny_corpus, tmp_path):
    repo = tmp_path / "repo"  # the layout of a checkout: configs here, the corpus in ../shared/corpus
    repo.mkdir()
    (repo / "configs").symlink_to(REPO / "configs")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "corpus").symlink_to(tiny_corpus)
    # "Distil from a model you already have": the user's teacher (here a tiny Llama with its own tokenizer, built
    # rather than downloaded) and the user's own text
    save_teacher(repo / "teachers" / "my-model", tiny_corpus, "llama", context=256)
    (repo / "my-text.txt").write_text("The river runs north of the city.\n\nA second paragraph of the user's text.\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in readme_commands():
        r = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{command}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        assert "Traceback" not in r.stderr, command


def test_every_path_the_readme_names_exists():
    named = set(re.findall(r"(?<![\w./-])((?:\.\./shared|configs|docs|scripts|src|tests|benchmarks|results)/[\w./*-]*)", README))
    named |= {m for m in re.findall(r"\]\(([^)#]+)\)", README) if "://" not in m}
    layout = README.split("## Layout", 1)[1].split("```")[1]  # "src/bootdistill/" then its entries, indented
    for line in layout.splitlines():
        if line.strip():
            entry = line.split()[0]
            named.add(("src/bootdistill/" if line.startswith("  ") else "") + entry)
    assert "configs/train-5m.yaml" in named and "src/bootdistill/train/" in named
    missing = [p for p in sorted(named) if not any((REPO / p.rstrip(".")).parent.glob(Path(p.rstrip(".")).name))]
    assert not missing, f"the README names paths that do not exist: {missing}"


def test_the_train_5m_config_says_what_it_runs():
    from bootdistill.config import load_config, resolve_model
    from bootdistill.shape import ModelShape, count_params

    path = REPO / "configs" / "train-5m.yaml"
    cfg = resolve_model(load_config(path))
    m = cfg.model
    n = count_params(ModelShape(cfg.data.vocab_size, m.d_model, m.n_layers, m.n_heads, m.context))["total"]
    header = path.read_text().split("\nout_dir:")[0]
    assert f"d {m.d_model}, {m.n_layers} layers, {m.n_heads} heads; {n / 1e6:.2f}M parameters" in header
    assert cfg.data.max_train_mb is not None and f"first {cfg.data.max_train_mb:g} MB" in header  # not all 374 MB
