"""How code actually runs: language adapters and sandbox backends."""
