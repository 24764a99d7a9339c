"""The cross-search dataset (group `dataset`): the logic behind its assets and checks, one concept per module."""
