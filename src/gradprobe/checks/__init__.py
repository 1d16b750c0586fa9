"""The public checks: gradients of scalar losses, vector products, Jacobians, layers."""
