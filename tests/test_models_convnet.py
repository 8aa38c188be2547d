"""The seed ConvNet: exact parameter count, layer list for run.json, width scaling, strategy wrappers."""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from models.convnet import SEED_PARAMETERS, ConvNet, count_parameters, describe
from models.strategies import LabelledDataParallel, StrategyError, check, parse_device_ids, wrap_layerwise


def test_seed_model_has_exactly_the_seed_parameter_count() -> None:
    with torch.device("meta"):          # no 560 MB allocation just to count
        model = ConvNet()
    assert count_parameters(model) == SEED_PARAMETERS == 140_902_954


def test_describe_measures_the_seed_layer_table_exactly() -> None:
    """The figures the per-layer DataParallel cost model is built on (issue 8)."""
    from models.train import model_description

    t0 = time.perf_counter()
    info = model_description(1.0)          # meta device: no 560 MB of weights
    elapsed = time.perf_counter() - t0
    layers = info.layers
    assert layers is not None and len(layers) == 9
    assert [layer.type for layer in layers] == ["Conv2d"] * 6 + ["Linear"] * 3
    assert info.parameters == 140_902_954 and info.parameter_bytes == 4 * 140_902_954
    assert sum(layer.parameters for layer in layers) == 140_902_954
    assert sum(layer.input_elements + layer.output_elements for layer in layers) == 1_047_690
    assert info.forward_flops == 3_687_613_696 == sum(layer.flops for layer in layers)
    by_name = {layer.name: layer for layer in layers}
    conv3, fc1 = by_name["features.6"], by_name["classifier.1"]
    assert conv3.input_shape == [96, 16, 16] and conv3.output_shape == [192, 16, 16]
    assert fc1.input_shape == [65536] and fc1.output_shape == [2048]
    assert fc1.flops == 2 * 65536 * 2048                     # one multiply-add per weight
    assert layers[0].input_shape == [3, 32, 32] and layers[-1].output_shape == [10]
    assert {layer.dtype_bytes for layer in layers} == {4}
    assert elapsed < 30      # liveness, not a benchmark: the meta device keeps it to about a second


def test_describe_on_real_weights_matches_the_meta_table() -> None:
    real = describe(ConvNet(width=0.0625))
    with torch.device("meta"):
        meta = describe(ConvNet(width=0.0625))
    assert real == meta and real.layers and real.layers[0].output_shape == [3, 32, 32]


def test_width_multiplier_keeps_the_graph_and_runs() -> None:
    model = ConvNet(width=0.0625)
    assert count_parameters(model) < SEED_PARAMETERS // 100
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    with pytest.raises(ValueError):
        ConvNet(width=0)


def test_layerwise_wraps_each_conv_and_linear_in_its_own_labelled_dp() -> None:
    model = wrap_layerwise(ConvNet(width=0.0625), device_ids=[])
    wrapped = [m for m in model.modules() if isinstance(m, LabelledDataParallel)]
    assert len(wrapped) == 9
    assert all(isinstance(w.module, (nn.Conv2d, nn.Linear)) for w in wrapped)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message; this machine has CUDA")
def test_dp_without_gpus_says_what_to_run_instead() -> None:
    with pytest.raises(StrategyError, match=r"dp needs 2 CUDA GPUs, found 0; on CPU run: "
                                            r"python -m models\.train --strategy ddp --device cpu --gpus 2"):
        check("dp", "cpu", 2, None)


def test_device_ids_parsing_and_checks() -> None:
    assert parse_device_ids("0,0") == (0, 0)
    assert parse_device_ids(None) is None
    with pytest.raises(StrategyError):
        parse_device_ids("a,b")
    with pytest.raises(StrategyError, match="only for --strategy dp"):
        check("single", "cpu", 1, (0,))
    with pytest.raises(StrategyError, match="single uses one device"):
        check("single", "cpu", 2, None)
    assert check("ddp", "cpu", 2, None) == ()
