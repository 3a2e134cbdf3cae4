"""Aevatar Sandbox."""
