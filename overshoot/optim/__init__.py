"""SGDO and AdamO."""
