"""Reading and measuring runs: the store's one reader (results), the paper's metrics, the report, figures."""
