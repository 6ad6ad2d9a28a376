"""Stage 2, training: search spaces, Optuna tuning, MLflow tracking, the model registry."""
