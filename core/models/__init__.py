"""visloupe.core.models"""
