"""Models: loading (directory, hub id, fsspec URL), metadata (``seqlab.json``), the shipped
models and their files, export, int8, calibration."""
