"""qatcore: INT8 quantization-aware-training kernels with runtime SIMD dispatch.

The numerical contract is ``docs/SPEC.md`` in the source repository. This package
imports no deep-learning framework; ``qatcore.torch`` is the PyTorch integration.
"""

from __future__ import annotations

from . import _backend
from ._backend import (
    ISA_LEVELS,
    available_isas,
    backend_info,
    get_isa,
    get_num_threads,
    set_isa,
    set_num_threads,
    use_backend,
)
from ._core import __version__
from .arq import ArqResult, arq, arq_params
from .calibration import Calibration, Calibrator
from .config import (
    ConfigError,
    LayerConfig,
    QuantizationWarning,
    RetrainConfig,
    RetrainDataConfig,
    RetrainWeightConfig,
)
from .fake_quant import EPS, QuantParams, dequantize, fake_quantize, qrange, quantize
from .histogram import Histogram
from .ifmr import IfmrResult, ifmr
from .quantizers import ActivationQuantizer
from .ulq import (
    UlqForward,
    UlqGrads,
    UlqWeightForward,
    UlqWeightGrads,
    ulq_backward,
    ulq_forward,
    ulq_params,
    ulq_weight_backward,
    ulq_weight_forward,
)
from .weight_quantizer import WeightGrads, WeightQuantizer, WeightScheme

__all__ = [
    "EPS",
    "ISA_LEVELS",
    "ActivationQuantizer",
    "ArqResult",
    "Calibration",
    "Calibrator",
    "ConfigError",
    "Histogram",
    "IfmrResult",
    "LayerConfig",
    "QuantParams",
    "QuantizationWarning",
    "RetrainConfig",
    "RetrainDataConfig",
    "RetrainWeightConfig",
    "UlqForward",
    "UlqGrads",
    "UlqWeightForward",
    "UlqWeightGrads",
    "WeightGrads",
    "WeightQuantizer",
    "WeightScheme",
    "__version__",
    "arq",
    "arq_params",
    "available_isas",
    "backend_info",
    "dequantize",
    "fake_quantize",
    "get_isa",
    "get_num_threads",
    "ifmr",
    "qrange",
    "quantize",
    "set_isa",
    "set_num_threads",
    "ulq_backward",
    "ulq_forward",
    "ulq_params",
    "ulq_weight_backward",
    "ulq_weight_forward",
    "use_backend",
]

_backend.apply_environment()
