"""The run contract: the plan, the models a run runs, reading, the annotator, landing, the
ledger and the finish."""
