"""Processing: cross-arena dedup per corpus, and entity resolution (suggestions, merge and split)."""
