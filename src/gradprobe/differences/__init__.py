"""Numerical derivatives: difference formulas, estimates at chosen entries, directions, group tests."""
