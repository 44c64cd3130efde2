"""Model registry: versions, manifests, safe loading, feature schema, reference data."""
