"""Follow-Through: the Flask app factory."""
