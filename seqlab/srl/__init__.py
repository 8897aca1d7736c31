"""Semantic role labelling: SRL data, frame examples, training, evaluation, frame tagging and its stage."""
