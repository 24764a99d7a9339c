"""Search over the collected works: an index of `unique_works` (`index.py`), queried by `scholar-pipeline search`
(`query.py`)."""
