"""Tests of the native real-server stack (Kafka KRaft node, FerretDB)."""
