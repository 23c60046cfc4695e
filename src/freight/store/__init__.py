"""Durable state: files, batches, their requests and status events (SQLAlchemy Core).

A store function that stamps or compares a time (leases, results, transitions, webhook
deliveries) takes it as a keyword-only `now` (seconds since the epoch; None: the wall
clock), so tests pass a time instead of waiting for one to come.
"""
