"""Maintenance: monthly partitions, backups and the dumps they store, content retention, actor
erasure, and settling what dead runs left behind."""
