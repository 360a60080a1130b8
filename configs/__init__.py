"""Shipped run profiles and simulated-fleet scenarios (package data, loaded by name)."""
