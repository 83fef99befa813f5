"""visloupe.widgets: interactive views over :mod:`visloupe.core` for Jupyter."""
