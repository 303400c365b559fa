"""Model adapters: one module per role, each with a real face (hub id or local path) and a tiny face."""
