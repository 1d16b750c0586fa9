"""The three problems gradprobe comes from, as runnable examples.

Each module has ``main()`` (prints its reports) and functions returning the
reports, so ``python -m gradprobe demo`` and the tests share them:

* :mod:`.linear_neuron`: a linear neuron whose author checked the output
  instead of the loss;
* :mod:`.two_layer_net`: a 2-2-1 network with a forgotten activation derivative;
* :mod:`.linear_regression`: linear regression with a missing ``1/m``.

Run one with ``python -m gradprobe.examples.linear_neuron``.
"""

SEEDS = ("linear_neuron", "two_layer_net", "linear_regression")
