"""A run: its plan, the models it runs, reading, the annotator, landing, the ledger and the finish."""
