"""Reading a landed table back: the report's figures, its HTML page, and ``seqlab show``."""
