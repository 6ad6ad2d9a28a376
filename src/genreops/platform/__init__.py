"""The services around the stages: embedded S3, MLflow, Prometheus, the native stack."""
