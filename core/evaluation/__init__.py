"""visloupe.core.evaluation"""
