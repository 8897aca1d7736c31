"""Models: loading (directory, hub id, fsspec URL), metadata, the shipped models, export, int8, calibration."""
