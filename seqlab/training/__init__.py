"""Fine-tuning and scoring: training configuration, data formats, examples, metrics, evaluate."""
