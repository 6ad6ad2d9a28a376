"""The real tritonserver binary run natively: server lifecycle, watchdog, allocator settings."""
