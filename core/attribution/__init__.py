"""visloupe.core.attribution"""
