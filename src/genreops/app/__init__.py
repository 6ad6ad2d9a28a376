"""What users run: the `genreops` command line and the demo."""
