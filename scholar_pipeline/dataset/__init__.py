"""The dataset built from every saved search's `works`: unique works, review counts, monitoring, exports."""
