"""The pure per-batch stages every engine runs: tokenize (with casing), tag, decode, tokens,
entities, flatten, aggregate.

The options of a stage that the configuration and the command line offer are declared here,
where importing them costs nothing: the stages themselves import numpy, pyarrow and the
tokenizers, which ``seqlab --help`` should not wait for.
"""

WINDOW_CUTS = ("sentence", "fixed")  # where windows end (``tokenize.window_cuts``)
