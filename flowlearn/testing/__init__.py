"""Test utilities shipped with flowlearn (a local Kafka-protocol broker for tests and demos)."""
