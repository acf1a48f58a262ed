"""What every layer above needs to run a model: device and precision, autocast, processes (torchrun),
checkpoints on disk, loading a model from a checkpoint, evaluating it, and the batch plan of a step.

`train/`, `distill/`, `report/` and `interop/` build on it; it imports none of them. Importing the package
imports no torch (`batch_plan` serves planners and listings that must start fast)."""
