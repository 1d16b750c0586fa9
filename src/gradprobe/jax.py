"""gradprobe for JAX: a function's ``jax.vjp`` (its ``custom_vjp`` rules) checked in one call.

``import gradprobe.jax`` needs JAX (``pip install 'gradprobe[jax]'``);
``import gradprobe`` alone never imports it. :func:`gradprobe.check` and the
other checks also take JAX arrays directly.

>>> import jax.numpy as jnp, gradprobe.jax
>>> gradprobe.jax.check_function(jnp.sin, jnp.linspace(0.0, 1.0, 4)).passed
True
"""
from .checks.jax_checks import check_function

__all__ = ["check_function"]
