"""The pure per-batch stages every engine runs: tokenize, tag, decode, tokens, entities, aggregate."""
