"""Generic controller machinery, knowing nothing of MachinePools.

Work queue, informers and caches, the manager, leader election, metrics, health and logging.
"""
