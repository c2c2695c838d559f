"""Model selection: base models ranked by transferability to a dataset before any training."""
