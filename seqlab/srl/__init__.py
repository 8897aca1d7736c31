"""Semantic role labelling. Training side: data, examples, train, evaluate; annotating side:
tag (the frame tagger), frames, stage."""
