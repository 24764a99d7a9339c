"""The cross-search dataset of issue 8: unique works, review counts, monitoring, exports."""
