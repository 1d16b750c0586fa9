"""Deciding which entries fail: allowances, kinks, the fused verdict kernel, diagnosis."""
