"""The seed ConvNet: exact parameter count, layer list for run.json, width scaling, strategy wrappers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from models.convnet import SEED_PARAMETERS, ConvNet, count_parameters, describe
from models.strategies import LabelledDataParallel, StrategyError, check, parse_device_ids, wrap_layerwise


def test_seed_model_has_exactly_the_seed_parameter_count() -> None:
    with torch.device("meta"):          # no 560 MB allocation just to count
        model = ConvNet()
    assert count_parameters(model) == SEED_PARAMETERS == 140_902_954


def test_describe_lists_every_conv_and_linear_layer() -> None:
    with torch.device("meta"):
        info = describe(ConvNet())
    assert [layer["type"] for layer in info["layers"]] == ["Conv2d"] * 6 + ["Linear"] * 3
    assert sum(layer["parameters"] for layer in info["layers"]) == info["parameters"] == SEED_PARAMETERS
    assert info["parameter_bytes"] == 4 * SEED_PARAMETERS
    fc1 = info["layers"][6]
    assert fc1["parameters"] == 65536 * 2048 + 2048     # the 134M-parameter layer DP replicates


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
