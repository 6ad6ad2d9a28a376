"""Stage 4, serving: publishing to a Triton repository, the Triton models' runtime, the client."""
