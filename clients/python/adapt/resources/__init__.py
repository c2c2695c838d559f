"""One class per domain of the API; `Client` holds one of each."""
