"""Running a model artifact: the Segmenter and its CPU backends (onnxruntime, OpenVINO, int8)."""
