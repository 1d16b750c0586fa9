"""The problem a check is about: parameter structures, the base point, the noise of f."""
