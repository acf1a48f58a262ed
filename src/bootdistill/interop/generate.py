"""`bootdistill generate`: continue a prompt with a trained model.

The model comes from a run directory (its latest checkpoint), a checkpoints/step_* directory or an `export`
directory (any Hugging Face GPT2LMHeadModel / LlamaForCausalLM directory with a tokenizer.json, loaded into
our own model class, so a run and its export sample the same text; it runs on the CPU). The prompt is tokenized with the model's
own tokenizer and starts after a document boundary, as every article does in training; sampling stops at the
next boundary or after --max-new-tokens. Sampling draws from a generator seeded with --seed: the same seed gives
the same text; temperature 0 is greedy.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from ..arch import build_model
from ..data.tokenizer import SEP_ID
from ..errors import CheckpointError, ConfigError, DataError
from ..runtime.loading import load_model_from_checkpoint
from ..train.init_from import load_into, read_source
from .hf_export import _tokenizer_path


@dataclass
class Sampler:
    model: torch.nn.Module
    tokenizer: object  # a tokenizers.Tokenizer
    boundary: int | None  # the document separator: what the prompt follows and what ends a continuation


def _from_hf_dir(path: Path) -> Sampler:
    source = read_source(str(path))
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise DataError(f"'{path}' has no tokenizer.json: generate from a directory written by `bootdistill export`")
    for note in source.notes:  # e.g. another rope_theta: the weights load, but our block computes differently
        print(f"note: '{path}' differs from bootdistill's {source.shape.arch} block: {note}", file=sys.stderr)
    model = build_model(source.shape)
    load_into(model, source)
    config = json.loads((path / "config.json").read_text())
    return Sampler(model.eval(), _tokenizer(tokenizer_file), config.get("eos_token_id"))


def _from_checkpoint(path: Path, tokenizer: str | None) -> Sampler:
    model, meta, ckpt = load_model_from_checkpoint(path)
    tokenizer_file = _tokenizer_path(ckpt, meta.get("tokenizer_sha256"), tokenizer)
    data_meta = tokenizer_file.parent / "meta.json"
    sep = json.loads(data_meta.read_text()).get("sep_id", SEP_ID) if data_meta.is_file() else SEP_ID
    return Sampler(model, _tokenizer(tokenizer_file), sep)


def _tokenizer(path: Path):
    return Tokenizer.from_file(str(path))


def load_sampler(source: str | Path, tokenizer: str | None = None) -> Sampler:
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"'{source}' does not exist: give a run directory, a checkpoints/step_* directory "
                              "or a directory written by `bootdistill export`")
    if (path / "config.json").is_file() and not (path / "meta.json").is_file():
        return _from_hf_dir(path)
    return _from_checkpoint(path, tokenizer)


@torch.no_grad()
def sample(model: torch.nn.Module, ids: list[int], max_new_tokens: int, temperature: float, top_k: int | None,
           seed: int, stop: int | None = None) -> list[int]:
    """New token ids after `ids` (the window slides once the model's context is full)."""
    gen = torch.Generator().manual_seed(seed)
    context = model.shape.context
    x = torch.tensor([ids])
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(x[:, -context:])[0, -1].float()
        if temperature == 0:
            token = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.numel():
                logits[logits < logits.topk(top_k).values[-1]] = float("-inf")
            token = int(torch.multinomial(logits.softmax(-1), 1, generator=gen))
        if token == stop:
            break
        new.append(token)
        x = torch.cat([x, torch.tensor([[token]])], dim=1)
    return new


def generate(source: str | Path, prompt: str, max_new_tokens: int = 100, temperature: float = 1.0,
             top_k: int | None = None, seed: int = 0, tokenizer: str | None = None) -> str:
    """The continuation of `prompt` as text."""
    if not prompt.strip():
        raise ConfigError("--prompt is empty: give the text to continue, e.g. --prompt 'The history of'")
    if max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be a positive integer, got {max_new_tokens}")
    if temperature < 0:
        raise ConfigError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"--top-k must be a positive integer, got {top_k}")
    s = load_sampler(source, tokenizer)
    prompt_ids = s.tokenizer.encode(prompt, add_special_tokens=False).ids
    ids = ([s.boundary] if s.boundary is not None else []) + prompt_ids
    new = sample(s.model, ids, max_new_tokens, temperature, top_k, seed, stop=s.boundary)
    # decoded with the prompt, so that tokens joined across the seam (a leading space, a split character) come out right
    head, whole = s.tokenizer.decode(prompt_ids), s.tokenizer.decode(prompt_ids + new)
    return whole[len(head):] if whole.startswith(head) else s.tokenizer.decode(new)
