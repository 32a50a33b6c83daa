"""The vehicle form of a model: SmoothQuant smoothing and int8 weights (`owled deploy`), export to
other runtimes (ONNX Runtime, OpenVINO), and the choice of the fastest backend on this CPU.

The int8 storage format and its torch kernel belong to the model (model/int8.py): a model
directory loads without this package; deploy only makes such directories.
"""
