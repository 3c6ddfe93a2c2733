"""Every layer type, one module each; importing this package registers them all.

Beside them: the bases (base, neuron, recurrent), shared geometry (conv_utils,
axis_util), the loss normalization (loss_norm) and the plain reference kernels the
fast convolution and pooling are tested against.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
