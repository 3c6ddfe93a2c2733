"""pycaffe's face: `from pipeline_lib import caffe`, then code written for pycaffe.

    from pipeline_lib import caffe
    from pipeline_lib.caffe import layers as L, params as P
    caffe.set_mode_cpu()
    net = caffe.Net("deploy.prototxt", "weights.caffemodel", caffe.TEST)
    solver = caffe.get_solver("solver.prototxt")       # or caffe.SGDSolver(...)
    t = caffe.io.Transformer({"data": net.blobs["data"].data.shape})
    n = caffe.NetSpec(); n.data = L.Input(shape=dict(dim=[1, 1, 28, 28]))

Everything here is the library's own: `Net` is `pipeline_lib.api.Net`, the solvers
train with the engine's Solver, `draw` renders with Graphviz (`pipeline_lib.draw`).
"""

from pipeline_lib import draw
from pipeline_lib.api import TEST, TRAIN, Net
from pipeline_lib.caffe import io, proto
from pipeline_lib.caffe.classifier import Classifier
from pipeline_lib.caffe.net_spec import NetSpec, layers, params, to_proto
from pipeline_lib.caffe.solver import (
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
    Solver,
    get_solver,
)
from pipeline_lib.mode import set_device, set_mode_cpu, set_mode_gpu, set_random_seed

__all__ = ["TEST", "TRAIN", "AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "Classifier",
           "NesterovSolver", "Net", "NetSpec", "RMSPropSolver", "SGDSolver", "Solver", "draw",
           "get_solver", "io", "layers", "params", "proto", "set_device", "set_mode_cpu",
           "set_mode_gpu", "set_random_seed", "to_proto"]
