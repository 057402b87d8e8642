"""Models that run outside charlm: a trained model as one self-contained ONNX file (`charlm export`,
the `export` extra: onnx, and onnxruntime for the check).

    onnxfile.py    export_model(model) -> ModelProto, its metadata, check(proto, model), save(proto, path)
    builders.py    the graph of each task's model; EXPORTERS: task object -> how it exports
    recurrent.py   the recurrent layers (ONNX's RNN/GRU/LSTM, a Scan for peephole LSTMs) and pooling
    graph.py       a graph under construction (nodes, initializers, fresh names)
    check.py       the graph in ONNX Runtime against charlm's forward pass on a sample (--check)

It sits beside `api` and `curves`: it reads models through the task registry (`charlm.tasks`) and
their networks' parameters; only `cli/export.py` uses it.
"""
