"""ONNX export: the QDQ graph run by ONNX Runtime against the PyTorch QAT model.

ONNX Runtime runs with its graph optimizations off for the element-wise comparisons:
every node then computes exactly what the ONNX operator defines (DequantizeLinear,
then a float convolution or matrix product), so the only differences from PyTorch
are float32 accumulation order, QuantizeLinear's division and NaN (README, "ONNX export").
The default session (integer kernels where ONNX Runtime fuses the QDQ pairs) is
checked on accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from helpers import assert_same_floats, require_module

torch = require_module("torch")
onnx = require_module("onnx")
ort = require_module("onnxruntime")
require_module("onnxscript")

import torch.nn.functional as F  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

import qatcore  # noqa: E402
import qatcore.torch as qt  # noqa: E402
import reference as ref  # noqa: E402
from qatcore import RetrainConfig  # noqa: E402

U = 2.0**-24  # float32 unit roundoff
MAX_FLIP_FRACTION = 1e-3


class Mixed(nn.Module):
    """Conv1d, Conv2d with reflect padding, a Linear that the configuration leaves float,
    and a Linear head, over (N, 2, 32) inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(2, 8, 5, padding=2)
        self.conv2d = nn.Conv2d(2, 6, 3, padding=1, padding_mode="reflect")
        self.pool = nn.MaxPool2d(2)
        self.hidden = nn.Linear(6 * 2 * 16, 32)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1d(x)).reshape(-1, 2, 4, 32)
        x = self.pool(torch.relu(self.conv2d(x)))
        x = torch.tanh(self.hidden(torch.flatten(x, 1)))
        return self.head(x)


MIXED_CONFIG = {
    "layers": {
        "conv2d": {
            "retrain_weight_config": {"weights_retrain_algo": "ulq_quantize", "channel_wise": True}
        },
        "hidden": {"retrain_enable": False},
        "head": {"retrain_weight_config": {"channel_wise": False}},
    }
}


@dataclass
class Case:
    model: nn.Module
    exported: qt.OnnxExport
    x: torch.Tensor
    first: str  # the layer that quantizes the model input
    last: str  # the layer whose output is the logits


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Case:
    torch.manual_seed(0)
    model = qt.prepare_qat(Mixed(), RetrainConfig.from_dict(MIXED_CONFIG))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(512, 2, 32, generator=g), torch.randint(0, 5, (512,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for i in range(0, 512, 32):  # the first batch calibrates, the rest train clips too
        opt.zero_grad()
        F.cross_entropy(model(x[i : i + 32]), y[i : i + 32]).backward()
        opt.step()
    model.eval()
    path = tmp_path_factory.mktemp("onnx") / "mixed.onnx"
    exported = qt.export_onnx(model, x[:2], path)
    return Case(model, exported, torch.randn(1024, 2, 32, generator=g), "conv1d", "head")


def digits_case(demo_result, tmp_path_factory) -> Case:
    data = demo_result.data
    model = demo_result.model.eval()
    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    return Case(model, qt.export_onnx(model, data.x_test[:2], path), data.x_test, "conv1", "fc2")


@pytest.fixture(scope="module")
def digits(digits_demo, tmp_path_factory) -> Case:
    return digits_case(digits_demo, tmp_path_factory)


@pytest.fixture(scope="module")
def digits_ulq(digits_demo_ulq, tmp_path_factory) -> Case:
    """The demo with ``--weights ulq_quantize`` (learned symmetric weight scales)."""
    return digits_case(digits_demo_ulq, tmp_path_factory)


def session(proto, *, optimize: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    return ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


@dataclass
class Run:
    logits: np.ndarray
    inputs: dict[str, np.ndarray]  # PyTorch: each quantized layer's float input
    codes: dict[str, np.ndarray]  # int8 codes of those inputs


def run_torch(case: Case) -> Run:
    """The PyTorch QAT model, with each quantized layer's float input and its codes;
    checks that the layer's fake-quantized activation is those codes dequantized with
    the exported scale and zero point."""
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    hooks = [
        m.act_quant.register_forward_hook(
            lambda mod, args, out, name=name: seen.__setitem__(
                name, (args[0].numpy().copy(), out.numpy().copy())
            )
        )
        for name, m in qt.quantized_layers(case.model).items()
    ]
    try:
        with torch.no_grad():
            logits = case.model(case.x).numpy()
    finally:
        for h in hooks:
            h.remove()
    inputs, codes = {}, {}
    for name, (x, fake_quantized) in seen.items():
        params = case.exported.layers[name].input_params
        inputs[name], codes[name] = x, qatcore.quantize(x, params)
        assert_same_floats(fake_quantized, qatcore.dequantize(codes[name], params), name)
    return Run(logits, inputs, codes)


def run_onnx(case: Case, x: np.ndarray | None = None) -> Run:
    """ONNX Runtime without graph optimizations, with every quantized layer's float
    input and int8 codes (a QuantizeLinear's input and output) as extra graph outputs."""
    proto = onnx.load(case.exported.path)
    quantize = {n.output[0]: n for n in proto.graph.node if n.op_type == "QuantizeLinear"}
    feed = case.x.numpy() if x is None else x
    graph_input = case.exported.input_names[0]
    extra = []
    for layer in case.exported.layers.values():
        float_input = quantize[layer.input_quantized[0]].input[0]
        extra += [
            (float_input, onnx.TensorProto.FLOAT),
            (layer.input_quantized[0], onnx.TensorProto.INT8),
        ]
    for tensor, dtype in extra:
        if tensor != graph_input:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(tensor, dtype, None))
    logits, *values = session(proto, optimize=False).run(None, {graph_input: feed})
    found = dict(zip([t for t, _ in extra if t != graph_input], values), **{graph_input: feed})
    layers = case.exported.layers
    inputs = {n: found[quantize[q.input_quantized[0]].input[0]] for n, q in layers.items()}
    codes = {n: found[q.input_quantized[0]] for n, q in layers.items()}
    return Run(logits, inputs, codes)


def implied_logit_tolerance(case: Case, pt: Run, rt: Run) -> np.ndarray:
    """|logits_onnx - logits_torch| <= s |Wq| @ |dq| + gamma(n+1) (|Wq| @ (|a| + |a'|) + 2 |b|)
    for the last layer (logits = Wq @ a + b, fan-in n): the one-step code differences dq
    of its input, each worth one scale step s, plus the float32 rounding of an
    (n+1)-term dot product in any order on either side (Higham's bound,
    gamma(k) = k u / (1 - k u))."""
    layer = case.model.get_submodule(case.last)
    info = case.exported.layers[case.last]
    w = layer.weight.detach().numpy()
    wq = np.abs(qatcore.fake_quantize(w, info.weight_params).astype(np.float64))
    p = info.input_params
    a_pt = np.abs(qatcore.dequantize(pt.codes[case.last], p).astype(np.float64))
    a_rt = np.abs(qatcore.dequantize(rt.codes[case.last], p).astype(np.float64))
    steps = np.abs(rt.codes[case.last].astype(np.float64) - pt.codes[case.last])
    k = w.shape[1] + 1
    gamma = k * U / (1 - k * U)
    bias = np.abs(layer.bias.detach().numpy().astype(np.float64))
    return float(p.scale) * steps @ wq.T + gamma * ((a_pt + a_rt) @ wq.T + 2 * bias)


def in_graph_order(case: Case) -> list[str]:
    proto = onnx.load(case.exported.path)
    names = [n.name for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    return [name for name in case.exported.layers if f"{name}/input_quantize" in names]


@pytest.mark.parametrize("which", ["digits", "digits_ulq", "mixed"])
def test_onnx_runtime_computes_the_pytorch_qat_model(which, request) -> None:
    case: Case = request.getfixturevalue(which)
    pt, rt = run_torch(case), run_onnx(case)
    order = in_graph_order(case)
    assert order[0] == case.first and set(order) == set(qt.quantized_layers(case.model))
    # The model input is quantized from identical floats: identical codes.
    assert np.array_equal(rt.codes[case.first], pt.codes[case.first])
    report = {}
    moved = np.zeros(len(case.x), dtype=bool)  # samples where an earlier layer's codes differ
    for name in order:
        diff = rt.codes[name].astype(np.int32) - pt.codes[name]
        flips = int(np.count_nonzero(diff))
        # Where every earlier code agrees, the float inputs differ only by the order of
        # float32 accumulation: by under 1% of a step (the worst-case float32 bound for
        # these fan-ins is of that order; measured: at most 1.6e-4), so any flip there
        # straddles a rounding boundary. Downstream of a flip they differ by what that
        # step moved.
        scale = float(case.exported.layers[name].input_params.scale)
        gap = np.abs(rt.inputs[name][~moved].astype(np.float64) - pt.inputs[name][~moved])
        report[name] = f"{flips}/{diff.size} flips, float gap {gap.max(initial=0) / scale:.1e} step"
        assert np.abs(diff).max() <= 1, report
        assert flips <= MAX_FLIP_FRACTION * diff.size, report
        assert gap.max(initial=0) < 1e-2 * scale, report
        moved |= diff.reshape(len(diff), -1).any(axis=1)
    error = np.abs(rt.logits.astype(np.float64) - pt.logits)
    tolerance = implied_logit_tolerance(case, pt, rt)
    assert (error <= tolerance).all(), (error.max(), report)
    assert (pt.logits.argmax(1) == rt.logits.argmax(1)).mean() >= 0.99, report


@pytest.mark.parametrize("which", ["digits", "digits_ulq"])
def test_digits_accuracy_in_onnx_runtime_equals_pytorch(which, request) -> None:
    from qatcore.torch import demo

    digits: Case = request.getfixturevalue(which)
    digits_demo = request.getfixturevalue("digits_demo" if which == "digits" else "digits_demo_ulq")
    data = digits_demo.data
    x, y = data.x_test.numpy(), data.y_test.numpy()
    want = run_torch(digits).logits
    proto = onnx.load(digits.exported.path)
    feed = {digits.exported.input_names[0]: x}
    for integer_kernels in (False, True):
        (logits,) = session(proto, optimize=integer_kernels).run(None, feed)
        assert demo.percent_correct(logits, y) == digits_demo.qat_accuracy, integer_kernels
        accuracy = demo.onnx_accuracy(
            digits.exported.path, data.x_test, data.y_test, integer_kernels=integer_kernels
        )
        assert accuracy == digits_demo.qat_accuracy
        # Not by luck: no logit moved by as much as the closest top-two margin. ONNX
        # Runtime's integer kernels quantize the bias and requantize each output, which
        # moves logits by up to a few hundredths here (about 6e-6 without them).
        top2 = np.sort(want, axis=1)[:, -2:]
        assert np.abs(logits - want).max() < (top2[:, 1] - top2[:, 0]).min()


def graph_tensors(path) -> tuple[onnx.ModelProto, dict[str, onnx.NodeProto], dict]:
    proto = onnx.load(path)
    nodes = {n.name: n for n in proto.graph.node}
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    return proto, nodes, inits


@pytest.mark.parametrize("which", ["digits", "digits_ulq", "mixed"])
def test_exported_int8_weights_are_the_reference_codes_of_the_trained_weights(
    which, request
) -> None:
    case: Case = request.getfixturevalue(which)
    _, nodes, inits = graph_tensors(case.exported.path)
    for name, layer in qt.quantized_layers(case.model).items():
        dq = nodes[f"{name}/weight_dequantize"]
        codes, scale, zero_point = (inits[t] for t in dq.input)
        assert codes.dtype == np.int8 and zero_point.dtype == np.int8
        axis = {a.name: a.i for a in dq.attribute}.get("axis", 1) if scale.ndim else None
        w = layer.weight.detach().numpy()
        q_ref, _ = ref.fake_quant(w, scale, zero_point.astype(np.int32), 8, axis)
        assert np.array_equal(codes, ref.codes(q_ref, 8)), name
        trained = layer.weight_quant.params(layer.weight)  # ARQ of the weights, or ULQ's scale
        assert_same_floats(scale, trained.scale, name)
        cfg = layer.weight_quant.scheme.config
        if cfg.weights_retrain_algo == "arq_retrain":
            want_scale = ref.arq_scale(w, cfg.channel_wise)
        else:  # the learned symmetric scale itself
            want_scale = layer.weight_quant.scale.detach().numpy()
        assert_same_floats(scale, want_scale.reshape(scale.shape), name)
        assert np.array_equal(zero_point, trained.zero_point) and axis == trained.axis
        assert not zero_point.any(), (name, zero_point)  # symmetric under every algorithm
        # The input pair carries the ULQ scale and zero point of the learned clips.
        q = nodes[f"{name}/input_quantize"]
        act = layer.act_quant
        want = qatcore.ulq_params(act.clip_min.item(), act.clip_max.item(), fixed_min=act.fixed_min)
        assert_same_floats(inits[q.input[1]], want.scale, name)
        assert inits[q.input[2]].dtype == np.int8 and inits[q.input[2]] == want.zero_point
        assert list(nodes[f"{name}/input_dequantize"].input[1:]) == list(q.input[1:])


def test_graph_quantizes_enabled_layers_only(mixed) -> None:
    proto, nodes, inits = graph_tensors(mixed.exported.path)
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") == 3 and ops.count("DequantizeLinear") == 6
    assert set(mixed.exported.layers) == {"conv1d", "conv2d", "head"}
    for name in mixed.exported.layers:
        assert f"{name}.weight" not in inits  # stored only as int8
        assert inits[f"{name}.weight_int8"].dtype == np.int8
    assert inits["hidden.weight"].dtype == np.float32  # retrain_enable=False: float
    assert not any(n.startswith("hidden") for n in nodes if "quantize" in n)
    assert_same_floats(inits["hidden.weight"], mixed.model.hidden.weight.detach().numpy())
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.producer_name == "qatcore"


def test_quantize_linear_divides_where_the_spec_multiplies(mixed) -> None:
    """The one place the exported graph does not compute the SPEC: QuantizeLinear is
    rint(x / s), the SPEC rint(x * (1/s)). They differ only within an ulp of a half step."""
    p = mixed.exported.layers["conv1d"].input_params
    s, z = p.scale, int(p.zero_point)
    g = np.random.default_rng(3)
    half_steps = (g.integers(-100, 100, 2 * 32 * 512) + 0.5).astype(np.float32) * s
    x = np.nextafter(half_steps, half_steps * g.choice([-2, 2], half_steps.size))
    x = x.astype(np.float32).reshape(512, 2, 32)
    rt = run_onnx(mixed, x)
    divided = np.clip(np.rint(x / s) + z, -128, 127)
    assert np.array_equal(rt.codes["conv1d"], divided)
    spec = qatcore.quantize(x, p)
    differ = spec != divided
    assert differ.any()  # such inputs exist, and ONNX Runtime follows the ONNX definition
    assert np.array_equal(differ, np.rint(x / s) != np.rint(x * (np.float32(1) / s)))


def test_export_leaves_the_model_as_it_was(mixed, tmp_path) -> None:
    before = {k: v.clone() for k, v in mixed.model.state_dict().items() if torch.is_tensor(v)}
    mixed.model.train()
    try:
        qt.export_onnx(mixed.model, mixed.x[:4], tmp_path / "again.onnx")
        assert mixed.model.training
    finally:
        mixed.model.eval()
    after = mixed.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_exported_layers_are_the_export_int8_records(mixed) -> None:
    records = qt.export_int8(mixed.model)
    assert list(mixed.exported.layers) == list(records)  # every layer is in the eval graph
    for name, layer in mixed.exported.layers.items():
        want = records[name]
        assert isinstance(layer.int8, qt.Int8Layer)
        assert layer.input_params == want.input_params == layer.int8.input_params
        assert layer.weight_params == want.weight_params
        assert np.array_equal(layer.int8.weight_codes, want.weight_codes)
        assert layer.int8.layer_type is mixed.model.get_submodule(name)._float_type


def test_dynamic_batch_export_from_a_batch_of_one(mixed, tmp_path) -> None:
    """torch.export fixes a dimension of size 1; a one-sample example still gives a file
    that takes any batch, the same graph as from a batch of two."""
    one = qt.export_onnx(mixed.model, mixed.x[:1], tmp_path / "one.onnx")
    two = qt.export_onnx(mixed.model, mixed.x[:2], tmp_path / "two.onnx")
    proto = onnx.load(one.path)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [n.op_type for n in proto.graph.node] == [
        n.op_type for n in onnx.load(two.path).graph.node
    ]
    from_one = session(proto, optimize=False)
    from_two = session(onnx.load(two.path), optimize=False)
    for batch in (1, 5):
        x = mixed.x[10 : 10 + batch]
        (logits,) = from_one.run(None, {one.input_names[0]: x.numpy()})
        (want,) = from_two.run(None, {two.input_names[0]: x.numpy()})
        assert logits.shape == (batch, 5)
        assert np.array_equal(logits, want), batch
        with torch.no_grad():
            assert np.abs(logits - mixed.model(x).numpy()).max() < 1e-4, batch


def test_static_batch_export(mixed, tmp_path) -> None:
    exported = qt.export_onnx(mixed.model, mixed.x[:1], tmp_path / "one.onnx", dynamic_batch=False)
    proto = onnx.load(exported.path)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    (logits,) = session(proto, optimize=False).run(None, {"x": mixed.x[:1].numpy()})
    assert np.abs(logits - mixed.model(mixed.x[:1]).detach().numpy()).max() < 1e-4


def test_bad_arguments_are_named(mixed, tmp_path) -> None:
    path, x = tmp_path / "m.onnx", mixed.x[:2]
    uncalibrated = qt.prepare_qat(Mixed(), RetrainConfig.from_dict(MIXED_CONFIG))
    with pytest.raises(
        RuntimeError,
        match=r"^export_onnx: layer 'conv1d' is not calibrated; run the first batch_num=1 "
        r"batches through the model in train\(\) mode first \(0 so far\)$",
    ):
        qt.export_onnx(uncalibrated, x, path)
    bad = [
        (dict(opset=17), ValueError, r"^opset: expected 18\.\.\d+ .*got 17"),
        (dict(opset="18"), TypeError, "^opset: expected an int"),
        (dict(example_input=x.numpy()), TypeError, "^example_input: expected a tensor"),
        (dict(example_input=3), TypeError, "^example_input: expected a tensor"),
        (dict(example_input=(x, x[:1])), ValueError, "^example_input: dynamic_batch=True needs"),
        (dict(example_input=x[0, 0, 0]), ValueError, "^example_input: dynamic_batch=True needs"),
        (dict(model="model"), TypeError, "^model: expected a torch.nn.Module"),
        (dict(path=3), TypeError, "^path: expected a str or os.PathLike"),
        (dict(dynamic_batch="no"), TypeError, "^dynamic_batch: expected a bool"),
        (dict(input_names="x"), TypeError, "^input_names: expected a sequence of str"),
        (dict(input_names=[1]), TypeError, "^input_names: expected a sequence of str"),
        (dict(input_names=["a", "b"]), ValueError, "^input_names: expected 1 names"),
        (dict(output_names=3), TypeError, "^output_names: expected a sequence of str"),
        (dict(output_names=["a", "b"]), ValueError, "^output_names: expected 1 names"),
    ]
    for change, error, message in bad:
        kwargs = {"model": mixed.model, "example_input": x, "path": path, **change}
        with pytest.raises(error, match=message):
            qt.export_onnx(**kwargs)
    assert not path.exists()


def test_only_int8_float32_layers_export(tmp_path) -> None:
    model = qt.prepare_qat(nn.Sequential(nn.Linear(4, 3)))
    layer = model.get_submodule("0")

    class FourBits(qatcore.WeightScheme):  # no dst_type asks for 4 bits yet
        @property
        def num_bits(self) -> int:
            return 4

    layer.weight_quant.scheme = FourBits(layer.layer_config.retrain_weight_config)
    model(torch.randn(8, 4))
    with pytest.raises(ValueError, match=r"^model: layer '0' is quantized to \(8, 4\) bits"):
        qt.export_onnx(model, torch.randn(2, 4), tmp_path / "m.onnx")
    model = qt.prepare_qat(nn.Sequential(nn.Linear(4, 3)).double())
    with pytest.raises(TypeError, match="^model: layer '0' has torch.float64 weights"):
        qt.export_onnx(model, torch.randn(2, 4, dtype=torch.float64), tmp_path / "m.onnx")


class Shared(nn.Module):
    """One Linear applied twice, and an auxiliary head that only training calls."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)
        self.aux = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.body(torch.relu(self.body(x))))
        assert h.shape[1] == self.head.in_features  # the twins keep the layers' attributes
        return (self.head(h), self.aux(h)) if self.training else self.head(h)


def test_reused_layers_and_training_only_layers(tmp_path) -> None:
    torch.manual_seed(0)
    model = qt.prepare_qat(Shared())
    model(torch.randn(16, 6))  # calibrates all three (body on its first call)
    model.eval()
    exported = qt.export_onnx(model, torch.randn(2, 6), tmp_path / "shared.onnx")
    assert set(exported.layers) == {"body", "head"}  # aux is not in the eval graph
    assert exported.layers["body"].input_quantized == (
        "body.input_quantized",
        "body.input_quantized.1",
    )
    proto, nodes, _ = graph_tensors(exported.path)
    onnx.checker.check_model(proto, full_check=True)
    for pair in ("body/input_quantize", "body/input_quantize.1"):
        assert list(nodes[pair].input[1:]) == ["body.input_scale", "body.input_zero_point"]
    assert not any(n.startswith("aux") for n in nodes)
    x = torch.randn(64, 6)
    (logits,) = session(proto, optimize=False).run(None, {exported.input_names[0]: x.numpy()})
    with torch.no_grad():
        assert np.abs(logits - model(x).numpy()).max() < 1e-5


def test_nan_has_no_code_in_onnx(mixed) -> None:
    """The SPEC carries NaN through fake quantization; QuantizeLinear has no NaN code,
    so the exported model turns a NaN input into a finite one."""
    x = mixed.x[:4].clone()
    x[1, 0, 3] = float("nan")
    with torch.no_grad():
        want = mixed.model(x).numpy()
    got = run_onnx(mixed, x.numpy()).logits
    assert np.isnan(want[1]).all() and np.isfinite(got[1]).all()
    rows = [0, 2, 3]
    assert np.abs(got[rows] - want[rows]).max() < 1e-5


def test_demo_prints_onnx_runtime_accuracy(tmp_path, capsys) -> None:
    require_module("sklearn")
    import re
    import warnings

    from qatcore.torch import demo

    path = tmp_path / "demo.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        demo.main(["--epochs", "2", "--qat-epochs", "1", "--onnx", str(path)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert path.exists()
    found = re.fullmatch(
        r"digits test accuracy +PyTorch fake-quant +([\d.]+)% +ONNX Runtime +([\d.]+)% "
        r"\(QDQ nodes as defined\), +([\d.]+)% \(its integer kernels\)",
        last,
    )
    assert found, last
    pytorch, as_defined, integer = map(float, found.groups())
    assert as_defined == pytorch
    # This briefly trained model has near-ties that integer requantization can flip.
    assert abs(integer - pytorch) <= 1.0
