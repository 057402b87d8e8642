"""The training engine: one loop for every task and every process count (see docs/architecture.md).

Nothing in this package compares task names: a task hands the engine a `Run` (model, batch source,
validation set, optimizer, state) and the engine trains it. (This file imports nothing: `launch`
must run before NumPy loads.)"""
