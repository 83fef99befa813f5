"""visloupe.core.data"""
