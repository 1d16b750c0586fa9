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

#: What ``python -m gradprobe demo`` checks at its end: (module, function
#: returning a report, what it checks, whether the check must pass). A
#: planted mistake must fail; a correct gradient must pass.
DEMO_CASES = (
    ("linear_neuron", "check_loss", "backprop against the loss E", True),
    ("linear_neuron", "check_output_by_mistake",
     "the output J checked instead of the loss E", False),
    ("two_layer_net", "check_correct", "correct backprop", True),
    ("two_layer_net", "check_forgotten_derivative", "hidden delta without sigmoid'(z)", False),
    ("linear_regression", "check_correct", "correct gradient, e = 1e-4", True),
    ("linear_regression", "check_missing_mean", "gradient without 1/m", False),
)
