"""The shared concepts: the class table, the preprocessing policy, the network,
the model artifact (and its ONNX export), metrics."""
