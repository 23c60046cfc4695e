"""Durable state: files, batches, their requests and status events (SQLAlchemy Core)."""
