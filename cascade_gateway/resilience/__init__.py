"""Timeouts, retries, circuit breakers and back-pressure around every upstream call."""
