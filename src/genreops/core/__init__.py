"""Foundations every stage shares: errors, the one settings object, process handling."""
