"""Drop-in parity with torch.nn.BatchNorm{1,2,3}d, checked with PyTorch's own module tests.

Every sample input and error input that torch's module_db (torch.testing._internal.common_modules) holds for
BatchNorm1d/2d/3d runs through the stock module and pygan's BatchNormAct with the identity activation (same
constructor arguments, parameters and buffers copied from the stock module), in training and evaluation mode, in
float64 and float32: outputs, input and parameter gradients, running statistics and exceptions (type and message)
must agree. Then the corner cases a new user meets (empty batches, bias=False, eps, one value per channel) and the
documented differences (docs/ops.md, "Differences from torch.nn.BatchNorm").
"""

import copy
import inspect

import pytest
import torch
from torch import nn
from torch.testing._internal.common_modules import FunctionInput, ModuleErrorEnum, module_db

import pygan
from pygan._compat import batch_norm_eps_error
from pygan.ops import reference

FUSED = {nn.BatchNorm1d: pygan.nn.BatchNormAct1d, nn.BatchNorm2d: pygan.nn.BatchNormAct2d,
         nn.BatchNorm3d: pygan.nn.BatchNormAct3d}
INFOS = {info.module_cls: info for info in module_db if info.module_cls in FUSED}
DTYPES = {"float64": torch.float64, "float32": torch.float32}
MODES = {"train": True, "eval": False}


def _cases(inputs_of: str):
    """(module class, dtype name, mode, index) of every module_db input of each BatchNorm; the inputs themselves
    are made in the test, after the seed fixture."""
    cases = []
    for cls, info in INFOS.items():
        for dt, dtype in DTYPES.items():
            for mode, training in MODES.items():
                inputs = getattr(info, inputs_of)(info, device="cpu", dtype=dtype, requires_grad=True, training=training)
                for i, inp in enumerate(inputs):
                    desc = getattr(inp, "module_error_input", inp).desc
                    cases.append(pytest.param(cls, dt, mode, i, id=f"{cls.__name__}-{desc or i}-{dt}-{mode}"))
    return cases


def _module_pair(cls, constructor_input, dtype, training):
    """The stock module with random parameters and running statistics, and pygan's with a copy of them."""
    stock = cls(*constructor_input.args, **constructor_input.kwargs).to(dtype)
    with torch.no_grad():
        if stock.weight is not None:
            stock.weight.uniform_(0.5, 1.5)
        if stock.bias is not None:
            stock.bias.uniform_(-0.5, 0.5)
        if stock.running_mean is not None:
            stock.running_mean.uniform_(-0.5, 0.5)
            stock.running_var.uniform_(0.5, 2.0)
    fused = FUSED[cls](*constructor_input.args, **constructor_input.kwargs).to(dtype)
    fused.load_state_dict(stock.state_dict())  # strict: the same keys
    return stock.train(training), fused.train(training)


def _assert_same_state(stock, fused, what):
    for (name, p), q in zip(stock.named_parameters(), fused.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=f"{what}: grad of {name}")
    for name, buf in stock.named_buffers():
        torch.testing.assert_close(getattr(fused, name), buf, msg=f"{what}: {name}")


def _two_steps(module, inputs, grads):
    """Outputs and input gradients of two forward + backward steps, then the parameter gradients and buffers."""
    dtype = next(module.buffers(), next(module.parameters(), torch.empty(0))).dtype
    values = {}
    for step, (x, g) in enumerate(zip(inputs, grads)):
        x = x.detach().to(dtype, copy=True).requires_grad_()
        y = module(x)
        y.backward(g.to(y.dtype))
        values[f"step {step}: output"], values[f"step {step}: input grad"] = y.detach(), x.grad
    values.update({f"grad of {name}": p.grad for name, p in module.named_parameters()})
    values.update(dict(module.named_buffers()))
    return values


def _assert_as_accurate(fused, stock, oracle, data_scale, what):
    """pygan's float32 error against the float64 oracle at most twice stock's (the project's tolerance for
    low-precision results), or 8 ulps of the scale of the values and of the data where stock's is smaller (stock's
    CPU kernels sum in float64, pygan's in float32 as stock's CUDA kernels do)."""
    if oracle is None or not oracle.is_floating_point():
        assert (fused is None and stock is None) or torch.equal(fused, stock), what
        return
    scale = max(data_scale, oracle.abs().max().item() if oracle.numel() else 1.0)
    err = lambda t: (t.double() - oracle).abs().max().item() if t.numel() else 0.0  # noqa: E731
    bound = 2 * err(stock) + 8 * torch.finfo(fused.dtype).eps * scale
    assert err(fused) <= bound, f"{what}: error {err(fused):.3g} > {bound:.3g} (stock's {err(stock):.3g})"


@pytest.mark.parametrize("cls,dt,mode,index", _cases("module_inputs_func"))
def test_module_db_sample_inputs(cls, dt, mode, index):
    info, dtype, training = INFOS[cls], DTYPES[dt], MODES[mode]
    sample = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True, training=training)[index]
    stock, fused = _module_pair(cls, sample.constructor_input, dtype, training)
    x = sample.forward_input.args[0].detach()
    inputs = (x, x * 2 + 1)  # two steps: momentum=None averages over batches
    grads = [torch.randn_like(x) for _ in inputs]
    oracle = copy.deepcopy(stock).double() if dtype != torch.float64 else None
    want, got = _two_steps(stock, inputs, grads), _two_steps(fused, inputs, grads)
    assert got.keys() == want.keys()
    if oracle is None:
        for k in want:
            torch.testing.assert_close(got[k], want[k], msg=k)
    else:
        exact = _two_steps(oracle, inputs, grads)
        data_scale = max([1.0] + [t.abs().max().item() for t in inputs if t.numel()])
        for k in want:
            _assert_as_accurate(got[k], want[k], exact[k], data_scale, k)


def _outcome(cls, constructor_input, x, dtype, training):
    """("construction" | "forward", exception) when it raises, else ("ok", output)."""
    try:
        m = cls(*constructor_input.args, **constructor_input.kwargs)
    except Exception as e:  # noqa: BLE001 - compared with stock's below
        return "construction", e
    try:
        return "ok", m.to(dtype).train(training)(x.detach().clone())
    except Exception as e:  # noqa: BLE001
        return "forward", e


@pytest.mark.parametrize("cls,dt,mode,index", _cases("module_error_inputs_func"))
def test_module_db_error_inputs(cls, dt, mode, index):
    info, dtype, training = INFOS[cls], DTYPES[dt], MODES[mode]
    err = info.module_error_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True, training=training)[index]
    sample = err.module_error_input
    x = sample.forward_input.args[0]
    stock = _outcome(cls, sample.constructor_input, x, dtype, training)
    fused = _outcome(FUSED[cls], sample.constructor_input, x, dtype, training)
    if training:  # what module_db expects of stock (in evaluation mode eps=0 is allowed since torch 2.13)
        stage = "construction" if err.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR else "forward"
        assert stock[0] == stage and isinstance(stock[1], err.error_type), stock
    assert fused[0] == stock[0], (fused, stock)
    if stock[0] == "ok":
        torch.testing.assert_close(fused[1], stock[1])
    else:
        assert type(fused[1]) is type(stock[1]) and str(fused[1]) == str(stock[1]), (fused[1], stock[1])


# ---------------------------------------------------------------- corner cases


@pytest.mark.parametrize("shape", [(0, 4), (0, 4, 3, 3), (2, 4, 0, 3), (2, 4, 3, 0, 2)],
                         ids=["1d_empty_batch", "2d_empty_batch", "2d_zero_height", "3d_zero_width"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_empty_batch_in_training_is_stock(shape, momentum):
    cls = {2: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[len(shape)]
    stock, fused = _module_pair(cls, FunctionInput(4, momentum=momentum), torch.float32, True)
    xs, xf = torch.randn(shape, requires_grad=True), torch.randn(shape, requires_grad=True)
    ys, yf = stock(xs), fused(xf)
    assert yf.shape == ys.shape == shape
    yf.sum().backward()
    ys.sum().backward()
    assert torch.equal(fused.weight.grad, torch.zeros(4)) and torch.equal(fused.bias.grad, torch.zeros(4))
    assert int(fused.num_batches_tracked) == 1
    _assert_same_state(stock, fused, "empty batch")  # running statistics untouched


def test_fused_model_with_an_empty_batch():
    torch.manual_seed(0)
    stock = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    fused = pygan.fuse(stock)
    x = torch.randn(0, 3, 8, 8)
    assert fused(x).shape == stock(x).shape == (0, 4, 6, 6)
    block = pygan.nn.Conv2dBNAct(3, 4, 3)
    assert block(x).shape == block.eval()(x).shape == (0, 4, 6, 6)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_bias_false(dims):
    stock_cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
    if "bias" in inspect.signature(stock_cls).parameters:
        stock = stock_cls(3, bias=False)
    else:  # torch 2.11 has no bias=False: a stock module without its bias, as newer releases build it
        stock = stock_cls(3)
        stock.register_parameter("bias", None)
    fused = FUSED[stock_cls](3, bias=False, activation="relu")
    assert fused.bias is None and fused.weight is not None
    assert fused.state_dict().keys() == stock.state_dict().keys()
    assert "bias=False" in repr(fused)
    converted = pygan.fuse(nn.Sequential(stock, nn.ReLU()))
    assert converted[0].bias is None


def test_eps_checked_as_stock_in_every_entry_point():
    # Stock's rule and words are those of the installed torch (eps = 0 in evaluation mode: allowed since torch 2.13,
    # a ValueError in 2.11); the op itself has one rule, torch 2.13's.
    x = torch.randn(4, 3, 5, 5)
    for eps, training, op_message in [(0.0, True, "batch_norm eps must be positive during training, but got"),
                                      (-1.0, True, "batch_norm eps must be positive during training, but got"),
                                      (-1.0, False, "batch_norm eps must be non-negative, but got")]:
        with pytest.raises(ValueError) as stock_error:
            nn.BatchNorm2d(3, eps=eps).train(training)(x)
        assert str(stock_error.value) == batch_norm_eps_error(eps, training)
        for run in (lambda: pygan.nn.BatchNormAct2d(3, eps=eps, activation="leaky_relu").train(training)(x),
                    lambda: pygan.ops.batch_norm_act(x, torch.zeros(3), torch.ones(3), training=training, eps=eps),
                    lambda: pygan.nn.Conv2dBNAct(3, 3, 1, eps=eps).train(training)(x)):
            with pytest.raises(ValueError) as error:
                run()
            assert str(error.value) == str(stock_error.value)
        with pytest.raises(ValueError, match=op_message):  # the op itself (C++: "but got 0")
            torch.ops.pygan.batch_norm_act(x, None, None, torch.zeros(3), torch.ones(3), None, training, eps,
                                           "identity", 0.0)
    # eps = 0 in evaluation mode: as stock (allowed since torch 2.13)
    stock, fused = nn.BatchNorm2d(3, eps=0).eval(), pygan.nn.BatchNormAct2d(3, eps=0).eval()
    conv = pygan.nn.Conv2dBNAct(3, 3, 1, eps=0).eval()
    if batch_norm_eps_error(0.0, False) is None:
        torch.testing.assert_close(fused(x), stock(x))
        conv(x)
    else:
        with pytest.raises(ValueError) as stock_error:
            stock(x)
        for module in (fused, conv):
            with pytest.raises(ValueError) as error:
                module(x)
            assert str(error.value) == str(stock_error.value)


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1), (1, 3, 1, 1, 1)])
def test_one_value_per_channel_raises_stock_value_error(shape):
    stock = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[len(shape)]
    x = torch.randn(shape)
    with pytest.raises(ValueError) as stock_error:
        stock(3)(x)
    with pytest.raises(ValueError) as error:
        FUSED[stock](3, activation="relu")(x)
    assert str(error.value) == str(stock_error.value)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        torch.ops.pygan.batch_norm_act(x, None, None, None, None, None, True, 1e-5, "identity", 0.0)
    if len(shape) == 4:
        with pytest.raises(ValueError) as error:
            pygan.fuse(nn.Sequential(nn.BatchNorm2d(3), nn.ReLU()))(x)
        assert str(error.value) == str(stock_error.value)


# ---------------------------------------------------------------- documented differences (docs/ops.md)


@pytest.mark.parametrize("fmt", ["nchw", "nhwc", "nc"])
def test_running_var_as_accurate_as_stock_for_large_means(fmt):
    # float32 channels of mean 1e3 and std 1e-1: statistics of the shifted values (stock takes double sums in
    # its NCHW kernel and float ones in its NHWC kernel, which lose 1e-4 relative here)
    shape = (8192, 4) if fmt == "nc" else (64, 4, 16, 16)
    x = (torch.randn(shape, dtype=torch.float64) * 0.1 + 1000.0).float()
    if fmt == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    dims = [0] + list(range(2, x.dim()))
    true_var = x.double().var(dims)
    cls = nn.BatchNorm1d if fmt == "nc" else nn.BatchNorm2d
    errors = {}
    for name, m in (("stock", cls(4, momentum=1.0)), ("pygan", FUSED[cls](4, momentum=1.0))):
        m(x)
        errors[name] = ((m.running_var.double() - true_var).abs() / true_var).max().item()
    # within twice stock's error, or eight float32 ulps where stock's is smaller (running_var is recovered from
    # the float32 invstd, docs/ops.md)
    assert errors["pygan"] <= max(2 * errors["stock"], 8 * 2.0 ** -24), errors


def test_empty_batch_statistics_of_the_op():
    # stock's functional batch norm returns uninitialized statistics for an empty batch; the op returns those of
    # mean 0, variance 0
    y, mean, invstd = torch.ops.pygan.batch_norm_act(torch.randn(0, 3, 4), None, None, None, None, None, True, 0.25,
                                                     "identity", 0.0)
    assert y.shape == (0, 3, 4)
    assert torch.equal(mean, torch.zeros(3)) and torch.equal(invstd, torch.full((3,), 2.0))
    ref_y, ref_mean, ref_invstd = reference.batch_norm_act(torch.randn(0, 3, 4), None, None, None, None, None, True,
                                                           0.25, "identity", 0.0)
    assert torch.equal(ref_mean, mean) and torch.equal(ref_invstd, invstd)
    rm, rv = torch.randn(3), torch.rand(3)
    before = rm.clone(), rv.clone()
    for update in (torch.ops.pygan.batch_norm_update_stats, reference.batch_norm_update_stats):
        update(rm, rv, mean, invstd, 0.1, 0.25, 0)  # count 0: nothing to update
        assert torch.equal(rm, before[0]) and torch.equal(rv, before[1])
        with pytest.raises(ValueError, match="count .* must be 0 .* or more than 1, got 1"):
            update(rm, rv, mean, invstd, 0.1, 0.25, 1)
