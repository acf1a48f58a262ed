"""Typed run configuration: dataclasses mirrored by YAML, dotted overrides, validation with clear messages.

Each component owns a small dataclass. Unknown keys are errors that suggest the closest valid key; values are
checked for type and range. A resolved config (presets filled in) is written beside every run.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .distill.kd_losses import get_loss
from .distill.policies import check_policy
from .errors import ConfigError, closest
from .shape import PRESETS


@dataclass
class DataConfig:
    corpus: str | None = None  # file/dir of WikiText text, .jsonl/.parquet, or hf:NAME[:CONFIG]; None = default
    valid: str | None = None  # validation text; None = the corpus's own validation file/split
    test: str | None = None  # test text; None = the corpus's own test file/split
    text_field: str = "text"  # field holding the text in jsonl/parquet/HF rows
    vocab_size: int = 5000  # of the BPE trained by `tokenizer: bpe`; a given tokenizer has its own
    tokenizer: str = "bpe"  # bpe (trained on the corpus), a tokenizer.json, or a Hugging Face tokenizer directory / hub name
    documents: Literal["wikitext", "blank_lines", "file"] = "wikitext"  # how a .raw/.txt file splits into documents:
    #   at ` = Title = ` lines, at blank lines, or the whole file as one document
    max_train_mb: float | None = None  # read at most this many MB of training text (demos, tests)
    prepared_dir: str | None = None  # where token files go; None = data/prepared/<hash of these settings>


@dataclass
class ModelConfig:
    preset: str | None = None  # a Table 1 name (1M ... 150M); fields below left unset come from it
    d_model: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    context: int | None = None
    dropout: float = 0.1  # embeddings and residual branches (after attention and FFN)
    attn_dropout: float = 0.0  # attention weights (paper §2.2); > 0 is 3-4x slower on CPU (no fused kernel)
    arch: Literal["gpt2", "llama"] = "gpt2"  # gpt2: the paper's block | llama: RoPE, RMSNorm, SwiGLU, no biases
    n_kv_heads: int | None = None  # llama: key/value heads for grouped-query attention; None = n_heads
    d_ff: int | None = None  # FFN hidden width; None = 4 d_model (gpt2) or 8/3 d_model rounded up to 32 (llama)
    tie_embeddings: bool = True  # the LM head shares the token embedding matrix
    init_from: str | None = None  # start from weights: a run/checkpoint dir of this project or a HF model dir
    init_flops: float | None = None  # training FLOPs behind init_from's weights (HF: unknown unless given)


@dataclass
class TrainConfig:
    batch_tokens: int | None = None  # tokens per optimizer step (from the preset when unset)
    micro_batch: int = 16  # sequences per forward; gradient accumulation fills batch_tokens
    lr_max: float | None = None
    lr_min: float | None = None
    lr_schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    warmup_steps: int = 2000
    total_steps: int = 10800  # length of the LR schedule
    max_steps: int | None = None  # stop earlier than total_steps (the schedule is unchanged)
    decay_fraction: float = 0.2  # wsd: last fraction of total_steps that decays to lr_min
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # (auto: bf16 on CUDA and on CPUs with native bf16)
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 1337
    eval_every: int = 200
    eval_sequences: int | None = 800  # the split's first N blocks (of model.context tokens) evaluated each time, on
    #                                   any micro_batch and process count; None = the whole split
    final_eval_sequences: int | None = None  # the same for the final val/test losses; None = the whole splits
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2  # the last K, plus the one with the best validation loss
    divergence_factor: float | None = 2.0  # stop when loss > this x its recent level, or a val loss keeps < 1/this of
    #                                        the best val loss's gain over ln V (train/guard.py); null: NaN/inf only
    eval_snapshots: bool = False  # keep the weights of every scheduled evaluation (evals/): the report then
    #                               locates a target crossing on the whole validation split
    threads: int | None = None  # torch CPU threads; None = torch's default
    parallel: str = "auto"  # under torchrun: ddp (replicas) | fsdp (sharded, FSDP2) | none; auto = ddp under torchrun
    save_logits: bool = False  # keep this run's own top-k distributions in RUN/logits (online teacher logits)
    save_logits_from_step: int = 0  # ... from this step on (early logits hurt students: design space §3.5)
    save_logits_top_p: float = 0.95  # ... truncated top-p then top-k, like a teacher cache
    save_logits_top_k: int = 50


@dataclass
class DistillConfig:
    """distill.* in four sections, each checked once when the config loads (_validate_distill):
    teacher (teacher, teacher_train_flops, diag_sequences), loss (loss, loss_params, alpha, combine, temperature,
    teacher_temperature, top_p, top_k, z_loss), policy and schedule (policy, margin, switch_on, kd_steps,
    alpha_schedule, alpha_window, kd_lr_factor, post_kd_lr_factor, lr_drop_steps, post_kd_lr) and selection
    (select_with, select_k). The keys stay flat: `distill.KEY` in YAML and overrides."""

    teacher: str | None = None  # run/checkpoint dir of a bootdistill model, a teacher cache dir, or hf:PATH
    teacher_train_flops: float | None = None  # training FLOPs of a teacher without a ledger (hf:); None = unknown
    policy: str = "classical"  # a Policy of distill/policies.py: classical | kd (throughout) | fixed (kd_steps) | bootstrapped
    loss: str = "kl"  # a class of distill/kd_losses.py, by name; checked at load with a did-you-mean
    loss_params: dict = field(default_factory=dict)  # the loss's own parameters, e.g. jsd: {beta: 0.5}
    alpha: float = 1.0  # KD weight (peak of alpha_schedule)
    combine: Literal["normalized", "normalized_mean", "mix"] = "normalized"  # normalized: CE + alpha*KD rescaled to
    #   CE's batch mean (paper eq. 1-2) | mix: (1-a) CE + a KD | normalized_mean: the normalized sum divided by
    #   (1 + alpha), so the gradient scale does not jump when KD stops
    temperature: float = 2.0  # tau on both sides (KL scaled by tau^2)
    teacher_temperature: float | None = None  # teacher-only temperature (SALT rho = 1/this); None = temperature
    top_p: float = 1.0  # teacher truncation: top-p, then top-k, renormalised
    top_k: int | None = None
    z_loss: float = 0.0  # weight of the student's Z-loss (log Z)^2
    margin: float = 0.05  # bootstrapped: stop KD for good once student val <= (1 + margin) * teacher val
    switch_on: Literal["val", "train"] = "val"  # bootstrapped: compare validation losses (val), or the mean training
    #   CE of the last eval_every steps with the teacher's CE on the same batches (train: no evaluation decides)
    kd_steps: int | None = None  # fixed: KD for the first kd_steps steps; also where decay schedules reach 0
    alpha_schedule: Literal["constant", "step", "linear_decay", "ratio_decay", "linear_increase", "linear_decrease",
                            "wsd"] = "constant"
    alpha_window: int = 0  # linear_decay / ratio_decay: steps of the transition, ending at kd_steps
    kd_lr_factor: float = 1.0  # KD-aware LR: multiplier of the LR schedule while KD is on
    post_kd_lr_factor: float = 1.0  # ... and once KD has stopped (a sharp drop: < 1)
    lr_drop_steps: int = 0  # steps over which the LR factor moves from kd_lr_factor to post_kd_lr_factor
    post_kd_lr: Literal["scale", "cosine"] = "scale"  # after KD: scale (schedule x post_kd_lr_factor) | cosine (drop to post_kd_lr_factor x
    #                            the LR at the stop, then cosine to lr_min at train.total_steps)
    diag_sequences: int = 64  # validation sequences (the first N blocks) for KD diagnostics (KL, entropies, agreement)
    select_with: str | None = None  # SALT_DS: early teacher checkpoint that picks the KD phase's sequences (policy fixed)
    select_k: int = 10  # SALT_DS: tokens whose true next token is outside the scorer's top-k count as 0 (eq. 10)


@dataclass
class LogConfig:
    tensorboard: bool = True  # when the tensorboard package is installed
    wandb: bool = False
    wandb_project: str = "bootdistill"
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    progress: bool = True


@dataclass
class RunConfig:
    out_dir: str = "runs/default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    log: LogConfig = field(default_factory=LogConfig)


# ---------------------------------------------------------------- building from dicts


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a type hint; YAML/CLI strings like '1e-3' become numbers."""
    origin = typing.get_origin(hint)
    if origin is Literal:  # an enumerated option: checked here, when the config loads
        options = [str(o) for o in typing.get_args(hint)]
        if isinstance(value, str) and value in options:
            return value
        if isinstance(value, bool):  # YAML 1.1 reads unquoted on/off/yes/no as booleans
            raise ConfigError(f"{where} is the boolean {str(value).lower()} (YAML reads unquoted on, off, yes and no as "
                              f"true or false): quote the value, e.g. {where}='{options[-1]}'; valid: {', '.join(options)}")
        match = difflib.get_close_matches(str(value), options, n=1, cutoff=0.5)
        hint_text = f"did you mean '{match[0]}'? " if match else ""
        raise ConfigError(f"{where} '{value}' is unknown ({hint_text}valid: {', '.join(options)})")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
                if f.is_integer():
                    return int(f)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None or not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    return value


# Older configs counted evaluations in batches of train.micro_batch sequences; they load as the sequences those
# batches held on one process (N x micro_batch), which no later layout change moves.
BATCH_COUNTS = {("train", "eval_batches"): "eval_sequences", ("train", "final_eval_batches"): "final_eval_sequences",
                ("distill", "diag_batches"): "diag_sequences"}


def upgrade_batch_counts(data: dict) -> dict:
    """`data` (a nested config dict) with the old *_batches counts turned into the *_sequences settings."""
    found = [(sec, old) for sec, old in BATCH_COUNTS if isinstance(data.get(sec), dict) and old in data[sec]]
    if not found:
        return data
    train = data.get("train") if isinstance(data.get("train"), dict) else {}
    micro = _coerce(train.get("micro_batch", TrainConfig.micro_batch), int, "train.micro_batch")
    data = dict(data)
    for sec, old in found:
        new = BATCH_COUNTS[sec, old]
        if new in data[sec]:
            raise ConfigError(f"{sec}.{old} (the old count in batches) and {sec}.{new} are both set: keep {sec}.{new}")
        value = _coerce(data[sec][old], int | None, f"{sec}.{old}")
        if value is not None and value < 1:
            raise ConfigError(f"{sec}.{old} must be > 0, got {value}")
        data[sec] = {**{k: v for k, v in data[sec].items() if k != old}, new: None if value is None else value * micro}
    return data


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from a nested dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {data!r}")
    if cls is RunConfig:
        data = upgrade_batch_counts(data)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"unknown config key '{path}'{closest(key, list(fields))}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value or {}, path)
        else:
            kwargs[key] = _coerce(value, hint, path)
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """Apply `a.b.c=value` to a nested dict (creating levels); the value is parsed as YAML."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{dotted}': '{key}' is not a section")
    node[keys[-1]] = yaml.safe_load(value) if isinstance(value, str) else value


# Which settings are part of a run's identity: one list of the settings that say where and how a run executes,
# never what it computes, and what each use adds to it (keys as tuples, for `flatten`'s skip)
WHERE_IT_RUNS = frozenset({("out_dir",), ("log",), ("train", "threads"), ("train", "device"), ("data", "prepared_dir")})
# may change between a run and its resume, and are not in a run's name (an experiment's config hash); parallel: the
# same run on more processes reads the same batches and draws the same curve
VOLATILE = WHERE_IT_RUNS | {("train", "max_steps"), ("train", "keep_checkpoints"), ("train", "checkpoint_every"),
                            ("train", "parallel")}
# do not make another experiment in a report: seeds of one configuration share the rest (each has its own teacher),
# and how often a run checkpoints, or on how many processes, does not change its curve
NOT_IDENTITY = WHERE_IT_RUNS | {("train", "seed"), ("distill", "teacher"), ("train", "checkpoint_every"),
                                ("train", "keep_checkpoints"), ("train", "parallel")}
# are not a method's settings, for the plot of savings against the settings a search varied
NOT_SETTINGS = WHERE_IT_RUNS | {("train", "seed"), ("data", "corpus"), ("distill", "diag_sequences")}


def flatten(data: dict, skip: set = frozenset(), prefix: tuple = (), keep_empty: bool = False) -> dict:
    """{'train.lr_max': 0.001, ...} of a nested config, without the keys (as tuples) in `skip` or below them;
    `keep_empty`: an empty section stays as a value ({}) instead of vanishing."""
    out = {}
    for k, v in data.items():
        key = prefix + (k,)
        if key in skip:
            continue
        if isinstance(v, dict) and (v or not keep_empty):
            out.update(flatten(v, skip, key, keep_empty))
        else:
            out[".".join(key)] = v
    return out


def parse_overrides(overrides: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value, e.g. train.lr_max=1e-3")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), value))
    return pairs


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a directory: give a YAML file in it, e.g. configs/train-5m.yaml")
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {what}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections (data:, model:, train: ...)")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> RunConfig:
    """YAML file (optional) + dotted overrides -> validated RunConfig."""
    data = dict(base or {})
    if path:
        data = _deep_merge(data, load_yaml(path))
    for key, value in parse_overrides(overrides or []):
        set_dotted(data, key, value)
    cfg = from_dict(RunConfig, data)
    validate(cfg)
    return cfg


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ---------------------------------------------------------------- validation and preset resolution


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def resolve_model(cfg: RunConfig) -> RunConfig:
    """Fill unset model/train fields from the preset; error if anything is still unset."""
    m, t = cfg.model, cfg.train
    if m.preset is not None:
        _check(m.preset in PRESETS, f"model.preset '{m.preset}' is unknown{closest(m.preset, list(PRESETS))}")
        p = PRESETS[m.preset]
        for name in ("d_model", "n_layers", "n_heads", "context"):
            if getattr(m, name) is None:
                setattr(m, name, getattr(p, name))
        for name in ("batch_tokens", "lr_max", "lr_min"):
            if getattr(t, name) is None:
                setattr(t, name, getattr(p, name))
    for name in ("d_model", "n_layers", "n_heads", "context"):
        _check(getattr(m, name) is not None, f"model.{name} is not set: give model.preset (e.g. 5M) or model.{name}")
    _check(m.d_model % m.n_heads == 0, f"model.d_model ({m.d_model}) must be divisible by model.n_heads ({m.n_heads})")
    _check_kv_heads(m)  # n_heads may come from the preset
    _check(t.lr_max is not None, "train.lr_max is not set: give model.preset or train.lr_max")
    if t.lr_min is None:
        t.lr_min = t.lr_max / 10
    if t.batch_tokens is None:
        t.batch_tokens = t.micro_batch * m.context
    return cfg


def _check_kv_heads(m: ModelConfig) -> None:
    if m.n_kv_heads is None:
        return
    _check(m.arch == "llama", "model.n_kv_heads (grouped-query attention) needs model.arch=llama: the gpt2 block "
           "has one key/value head per query head")
    _check(m.n_kv_heads > 0, f"model.n_kv_heads must be > 0, got {m.n_kv_heads}")
    if m.n_heads:
        _check(m.n_heads % m.n_kv_heads == 0, f"model.n_kv_heads ({m.n_kv_heads}) must divide model.n_heads "
               f"({m.n_heads}): each key/value head serves an equal group of query heads")


def _validate_distill(k: DistillConfig) -> None:
    """DistillConfig section by section (the sections are the groups of its fields)."""
    # teacher
    _check(k.teacher_train_flops is None or k.teacher_train_flops >= 0, "distill.teacher_train_flops must be >= 0")
    _check(k.diag_sequences >= 1, f"distill.diag_sequences must be >= 1, got {k.diag_sequences}")
    # loss
    _check(0 <= k.alpha <= 1, f"distill.alpha must be in [0, 1], got {k.alpha}")
    _check(k.temperature > 0, f"distill.temperature must be > 0, got {k.temperature}")
    _check(0 < k.top_p <= 1, f"distill.top_p must be in (0, 1], got {k.top_p}")
    _check(k.top_k is None or k.top_k >= 1, f"distill.top_k must be >= 1, got {k.top_k}")
    _check(k.teacher_temperature is None or k.teacher_temperature > 0, f"distill.teacher_temperature must be > 0, got {k.teacher_temperature}")
    _check(k.z_loss >= 0, f"distill.z_loss must be >= 0, got {k.z_loss}")
    get_loss(k.loss, k.loss_params)  # unknown loss or parameter: one line with a did-you-mean
    # policy and schedule
    _check(k.margin >= 0, f"distill.margin must be >= 0, got {k.margin}")
    _check(k.switch_on == "val" or k.policy == "bootstrapped",
           f"distill.switch_on={k.switch_on} chooses the bootstrapped policy's switch: set distill.policy=bootstrapped "
           "or leave switch_on at val")
    _check(k.kd_steps is None or k.kd_steps >= 0, f"distill.kd_steps must be >= 0, got {k.kd_steps}")
    _check(k.alpha_window >= 0 and k.lr_drop_steps >= 0, "distill.alpha_window and distill.lr_drop_steps must be >= 0")
    _check(k.kd_lr_factor > 0 and k.post_kd_lr_factor > 0, "distill.kd_lr_factor and distill.post_kd_lr_factor must be > 0")
    check_policy(k)  # what the chosen policy reads: its schedule, stop rule and LR settings
    # selection (SALT_DS)
    _check(k.select_k >= 1, f"distill.select_k must be >= 1, got {k.select_k}")
    if k.select_with and (k.policy != "fixed" or k.kd_steps is None):
        raise ConfigError("distill.select_with (SALT_DS) selects the data of a KD phase of known length: "
                          "use distill.policy=fixed with distill.kd_steps")


def validate(cfg: RunConfig) -> None:
    m, t, d, k = cfg.model, cfg.train, cfg.data, cfg.distill
    _check(d.vocab_size >= 260, f"data.vocab_size must be at least 260 (256 bytes + 4 specials), got {d.vocab_size}")
    _check(d.vocab_size < 2**32, f"data.vocab_size must fit uint32 token files (< 2**32), got {d.vocab_size}")
    _check(bool(str(d.tokenizer).strip()), "data.tokenizer must be bpe, a tokenizer.json, or a Hugging Face tokenizer directory or name")
    _check(d.max_train_mb is None or d.max_train_mb > 0, "data.max_train_mb must be > 0")
    for name in ("d_model", "n_layers", "n_heads", "context"):
        v = getattr(m, name)
        _check(v is None or v > 0, f"model.{name} must be > 0, got {v}")
    if m.d_model and m.n_heads:
        _check(m.d_model % m.n_heads == 0, f"model.d_model ({m.d_model}) must be divisible by model.n_heads ({m.n_heads})")
    _check_kv_heads(m)
    _check(m.d_ff is None or m.d_ff > 0, f"model.d_ff must be > 0, got {m.d_ff}")
    _check(m.init_flops is None or m.init_flops >= 0, f"model.init_flops must be >= 0, got {m.init_flops}")
    _check(m.init_flops is None or m.init_from is not None, "model.init_flops counts the compute behind "
           "model.init_from's weights: set model.init_from too")
    _check(0 <= m.dropout < 1, f"model.dropout must be in [0, 1), got {m.dropout}")
    _check(0 <= m.attn_dropout < 1, f"model.attn_dropout must be in [0, 1), got {m.attn_dropout}")
    _check(t.micro_batch > 0, f"train.micro_batch must be > 0, got {t.micro_batch}")
    _check(t.batch_tokens is None or t.batch_tokens > 0, f"train.batch_tokens must be > 0, got {t.batch_tokens}")
    for name in ("lr_max", "lr_min"):
        v = getattr(t, name)
        _check(v is None or v >= 0, f"train.{name} must be >= 0, got {v}")
        _check(v is None or v < 3.4e38, f"train.{name} must fit a float32 (< 3.4e38), got {v}")
    _check(t.warmup_steps >= 0, f"train.warmup_steps must be >= 0, got {t.warmup_steps}")
    _check(t.total_steps > 0, f"train.total_steps must be > 0, got {t.total_steps}")
    _check(t.max_steps is None or t.max_steps > 0, f"train.max_steps must be > 0, got {t.max_steps}")
    _check(t.max_steps is None or t.max_steps <= t.total_steps,
           f"train.max_steps ({t.max_steps}) is past train.total_steps ({t.total_steps}), the end of the LR schedule: "
           "raise train.total_steps or lower train.max_steps")
    _check(t.warmup_steps <= t.total_steps,
           f"train.warmup_steps ({t.warmup_steps}) is longer than train.total_steps ({t.total_steps}): the LR would never "
           "reach train.lr_max; lower train.warmup_steps")
    _check(t.threads is None or t.threads >= 1, f"train.threads must be >= 1 or null (torch's default), got {t.threads}")
    _check(0 <= t.seed < 2**63, f"train.seed must be an integer in [0, 2^63), got {t.seed}")
    _check(0 < t.decay_fraction <= 1, f"train.decay_fraction must be in (0, 1], got {t.decay_fraction}")
    _check(t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}")
    _check(0 <= t.beta1 < 1 and 0 <= t.beta2 < 1, "train.beta1 and train.beta2 must be in [0, 1)")
    _check(t.grad_clip >= 0, f"train.grad_clip must be >= 0 (0 disables), got {t.grad_clip}")
    _check(t.eval_every > 0 and t.log_every > 0 and t.checkpoint_every > 0, "train.eval_every, log_every and checkpoint_every must be > 0")
    _check(t.eval_sequences is None or t.eval_sequences > 0, "train.eval_sequences must be > 0 or null (whole split)")
    _check(t.final_eval_sequences is None or t.final_eval_sequences > 0,
           "train.final_eval_sequences must be > 0 or null (whole split)")
    _check(t.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1")
    _check(t.divergence_factor is None or t.divergence_factor > 1, "train.divergence_factor must be > 1 or null")
    _check(t.parallel in ("auto", "none", "ddp", "fsdp"), f"train.parallel must be auto, none, ddp or fsdp, got '{t.parallel}'")
    _validate_distill(k)
    _check(t.save_logits_from_step >= 0, f"train.save_logits_from_step must be >= 0, got {t.save_logits_from_step}")
    _check(0 < t.save_logits_top_p <= 1, f"train.save_logits_top_p must be in (0, 1], got {t.save_logits_top_p}")
    _check(t.save_logits_top_k >= 1, f"train.save_logits_top_k must be >= 1, got {t.save_logits_top_k}")
