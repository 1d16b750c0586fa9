"""gradprobe for PyTorch: custom autograd Functions and modules checked in one call.

``import gradprobe.torch`` needs PyTorch (``pip install 'gradprobe[torch]'``);
``import gradprobe`` alone never imports it. :func:`gradprobe.check` and the
other checks also take torch tensors directly.

>>> import torch, gradprobe.torch
>>> gradprobe.torch.check_function(torch.sin, torch.linspace(0.0, 1.0, 4)).passed
True
"""
from .checks.torch_checks import check_function, check_module

__all__ = ["check_function", "check_module"]
