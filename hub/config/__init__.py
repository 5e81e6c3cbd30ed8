"""connectors.yaml: models, loading with positions, and `hookhub check`."""
