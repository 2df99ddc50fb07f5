"""Unit tests for ``nasedu.ops`` and ``nasedu.registry`` (chapters DARTS, NASNet, ENAS, PNAS).

In the spirit of timm's ``tests/test_models.py``: one parametrized test over every
registered op (shapes, gradients), plus oracles where they exist. Parameter counts are
derived by hand from the papers' definitions (DARTS §3.1.1 and ``cnn/operations.py``;
NASNet App. A.4) and compared with the real modules.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasedu.ops import (
    DARTS_PRIMITIVES,
    ENAS_PRIMITIVES,
    NASNET_PRIMITIVES,
    OPS,
    PNAS_PRIMITIVES,
    DilConv,
    FactorizedReduce,
    Identity,
    Pool,
    SepConv,
    build,
    drop_path,
)
from nasedu.registry import Registry

ALL_OPS = OPS.names()


def _out_size(size: int, stride: int) -> int:
    # Every op pads so that a stride-s op gives ceil(size / s), odd sizes included.
    return (size + stride - 1) // stride


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------- every op
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7], ids=["even", "odd"])
@pytest.mark.parametrize("name", ALL_OPS)
def test_op_shape_and_gradients(name, stride, size, affine):
    torch.manual_seed(0)
    C = 4
    op = build(name, C, stride, affine)
    op.train()
    x = torch.randn(2, C, size, size, requires_grad=True)  # (B, C, H, W)
    out = op(x)
    assert out.shape == (2, C, _out_size(size, stride), _out_size(size, stride))
    assert torch.isfinite(out).all()
    if name == "none":
        assert torch.count_nonzero(out) == 0
        return
    # A random projection, not out.sum(): the sum of a BN output does not depend on
    # its input or its weight, so .sum() would give exactly-zero gradients there.
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in op.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), (
            f"{name}: parameter {pname} has a non-finite grad"
        )
        assert p.grad.abs().sum() > 0, (
            f"{name}: parameter {pname} has an all-zero gradient"
        )
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0, f"{name}: the input got an all-zero gradient"


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7], ids=["even", "odd"])
def test_none_gives_zeros_of_the_output_shape(stride, size):
    x = torch.randn(3, 4, size, size) + 5.0
    out = build("none", 4, stride)(x)
    assert out.shape == (3, 4, _out_size(size, stride), _out_size(size, stride))
    assert torch.equal(out, torch.zeros_like(out))
    assert _n_params(build("none", 4, stride)) == 0


def test_primitive_lists_name_registered_ops():
    for primitives in (
        DARTS_PRIMITIVES,
        NASNET_PRIMITIVES,
        PNAS_PRIMITIVES,
        ENAS_PRIMITIVES,
    ):
        assert len(set(primitives)) == len(primitives)
        assert [p for p in primitives if p not in OPS] == []
    # The DARTS/SNAS search space has exactly these 8 candidates, in the official order
    # (``cnn/genotypes.py`` PRIMITIVES); the order matters for alpha columns.
    assert DARTS_PRIMITIVES == (
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    )
    assert len(NASNET_PRIMITIVES) == 13  # NASNet §3 lists 13 operations
    assert len(PNAS_PRIMITIVES) == 8  # PNAS §3.1 lists 8


# --------------------------------------------------------------- skip connection
def test_skip_connect_stride_1_is_the_identity():
    op = build("skip_connect", 4, 1)
    x = torch.randn(2, 4, 5, 5)
    assert isinstance(op, Identity)
    assert op(x) is x
    assert _n_params(op) == 0


@pytest.mark.parametrize("affine", [True, False])
def test_skip_connect_stride_2_is_a_factorized_reduce(affine):
    op = build("skip_connect", 6, 2, affine)
    assert isinstance(op, FactorizedReduce)
    # Two stride-2 1x1 convs of C -> C/2 each, concatenated, then BN.
    assert op.conv_1.stride == (2, 2) and op.conv_2.stride == (2, 2)
    assert op.conv_1.out_channels + op.conv_2.out_channels == 6
    assert op.bn.affine is affine


def test_factorized_reduce_halves_odd_and_even_maps_and_sees_both_offsets():
    op = FactorizedReduce(2, 2, affine=False)
    with torch.no_grad():
        op.conv_1.weight.fill_(1.0)
        op.conv_2.weight.fill_(1.0)
    op.eval()  # running stats are 0 / 1, so BN is (almost) the identity
    x = torch.zeros(1, 2, 4, 4)
    x[:, :, 1, 1] = 1.0  # only the offset (odd-pixel) path can see this pixel
    out = op(x)
    assert out[0, 0].abs().sum() == 0  # the even path misses it
    assert out[0, 1, 0, 0] > 0.9  # the offset path sees it


def test_factorized_reduce_rejects_odd_channels():
    with pytest.raises(ValueError, match="even C_out"):
        build("skip_connect", 5, 2)


# ------------------------------------------------------ parameter-count oracles
def _bn(C: int, affine: bool) -> int:
    return 2 * C if affine else 0  # weight and bias; none without affine


#: Parameter counts derived from the papers' definitions, for C channels.
#: A separable conv (DARTS ``SepConv``, NASNet App. A.4 "applied twice") is twice
#: [depthwise k×k: k²·C] + [pointwise 1×1: C·C] + [BN: 2C], so sep_conv_3x3 has
#: 2·(9C + C² + 2C) with affine BN. A dilated conv is the same block once:
#: k²·C + C² + 2C. ReLU-conv-BN k×k: k²·C² + 2C. The "1×k then k×1" conv: 2k·C² + 2C.
#: A strided skip (FactorizedReduce): two C×(C/2) 1×1 convs = C², plus BN.
PARAM_FORMULAS = {
    "none": lambda C, s, a: 0,
    "skip_connect": lambda C, s, a: 0 if s == 1 else C * C + _bn(C, a),
    "avg_pool_3x3": lambda C, s, a: 0,
    "max_pool_3x3": lambda C, s, a: 0,
    "max_pool_5x5": lambda C, s, a: 0,
    "max_pool_7x7": lambda C, s, a: 0,
    "sep_conv_3x3": lambda C, s, a: 2 * (9 * C + C * C + _bn(C, a)),
    "sep_conv_5x5": lambda C, s, a: 2 * (25 * C + C * C + _bn(C, a)),
    "sep_conv_7x7": lambda C, s, a: 2 * (49 * C + C * C + _bn(C, a)),
    "dil_conv_3x3": lambda C, s, a: 9 * C + C * C + _bn(C, a),
    "dil_conv_5x5": lambda C, s, a: 25 * C + C * C + _bn(C, a),
    "conv_1x1": lambda C, s, a: C * C + _bn(C, a),
    "conv_3x3": lambda C, s, a: 9 * C * C + _bn(C, a),
    "conv_3x1_1x3": lambda C, s, a: 6 * C * C + _bn(C, a),
    "conv_7x1_1x7": lambda C, s, a: 14 * C * C + _bn(C, a),
}


def test_every_paper_primitive_has_a_recorded_parameter_formula():
    papers = set(
        DARTS_PRIMITIVES + NASNET_PRIMITIVES + PNAS_PRIMITIVES + ENAS_PRIMITIVES
    )
    assert sorted(papers - set(PARAM_FORMULAS)) == []


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", sorted(PARAM_FORMULAS))
def test_parameter_count_matches_the_paper_definition(name, stride, affine):
    C = 6  # even (FactorizedReduce) and not a square, so k²·C and C² cannot be confused
    assert _n_params(build(name, C, stride, affine)) == PARAM_FORMULAS[name](
        C, stride, affine
    )


def test_sep_conv_3x3_count_is_twice_depthwise_pointwise_bn():
    C = 16
    assert _n_params(build("sep_conv_3x3", C)) == 2 * (9 * C + C * C + 2 * C)
    assert _n_params(build("dil_conv_3x3", C)) == 9 * C + C * C + 2 * C


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_sep_conv_has_the_darts_structure(k, stride):
    C = 4
    op = build(f"sep_conv_{k}x{k}", C, stride)
    assert isinstance(op, SepConv)
    blocks = list(op.children())
    assert len(blocks) == 2 and all(isinstance(b, DilConv) for b in blocks)
    for block in blocks:
        # ReLU -> depthwise -> pointwise -> BN, with nothing between the two convs.
        kinds = [type(m) for m in block.children()]
        assert kinds == [nn.ReLU, nn.Conv2d, nn.Conv2d, nn.BatchNorm2d]
    convs = [m for m in op.modules() if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [C, 1, C, 1]
    assert [c.kernel_size for c in convs] == [(k, k), (1, 1), (k, k), (1, 1)]
    # Only the first separable conv carries the stride (DARTS ``SepConv``).
    assert [c.stride for c in convs] == [(stride, stride), (1, 1), (1, 1), (1, 1)]
    assert all(c.bias is None for c in convs)


@pytest.mark.parametrize("k, dilation", [(3, 2), (5, 2)])
def test_dil_conv_has_the_darts_structure(k, dilation):
    C = 4
    op = build(f"dil_conv_{k}x{k}", C, 2)
    assert isinstance(op, DilConv)
    kinds = [type(m) for m in op.children()]
    assert kinds == [nn.ReLU, nn.Conv2d, nn.Conv2d, nn.BatchNorm2d]
    depthwise, pointwise = op[1], op[2]
    assert depthwise.groups == C and depthwise.dilation == (dilation, dilation)
    assert depthwise.kernel_size == (k, k) and depthwise.stride == (2, 2)
    assert pointwise.kernel_size == (1, 1) and pointwise.groups == 1


@pytest.mark.parametrize(
    "name", ["conv_1x1", "conv_3x3", "conv_3x1_1x3", "conv_7x1_1x7"]
)
def test_plain_convs_are_relu_conv_bn(name):
    kinds = [type(m) for m in build(name, 4).children()]
    assert kinds[0] is nn.ReLU and kinds[-1] is nn.BatchNorm2d
    assert set(kinds[1:-1]) == {nn.Conv2d}


# ------------------------------------------------------------------------ pools
@pytest.mark.parametrize(
    "name", ["avg_pool_3x3", "max_pool_3x3", "max_pool_5x5", "max_pool_7x7"]
)
def test_pools_are_followed_by_non_affine_bn_only_in_supernets(name):
    plain = build(name, 4, 1, affine=True)
    assert isinstance(plain, Pool) and len(plain) == 1
    supernet = build(name, 4, 1, affine=False)
    assert len(supernet) == 2
    bn = supernet[1]
    assert (
        isinstance(bn, nn.BatchNorm2d) and bn.affine is False and bn.num_features == 4
    )


def test_avg_pool_does_not_count_padding():
    # DARTS uses count_include_pad=False: a constant map stays constant at the border.
    out = build("avg_pool_3x3", 2, 1, affine=True)(torch.ones(1, 2, 5, 5))
    assert torch.allclose(out, torch.ones_like(out))


# --------------------------------------------------------------------- drop_path
def test_drop_path_with_zero_prob_returns_the_same_tensor():
    x = torch.randn(4, 3, 2, 2)
    assert drop_path(x, 0.0) is x
    assert drop_path(x, 0.0, training=True) is x


def test_drop_path_is_not_applied_in_eval_mode():
    x = torch.randn(4, 3, 2, 2)
    assert drop_path(x, 0.5, training=False) is x


def test_drop_path_drops_whole_samples_at_rate_p_and_keeps_the_mean():
    torch.manual_seed(0)
    n, p = 20_000, 0.5
    x = torch.ones(n, 2, 2, 2)
    out = drop_path(x, p)
    per_sample = out.flatten(1)
    # A whole path is dropped or kept: every sample is all 0 or all 1/(1-p).
    zeroed = (per_sample == 0).all(dim=1)
    kept = torch.isclose(per_sample, torch.tensor(1 / (1 - p))).all(dim=1)
    assert bool((zeroed | kept).all())
    # Binomial(20000, 0.5): std of the fraction ~ 0.0035, so 0.02 is > 5 sigma.
    assert abs(zeroed.float().mean().item() - p) < 0.02
    assert abs(out.mean().item() - 1.0) < 0.04
    assert x.eq(1).all()  # out of place: the input is untouched


def test_drop_path_is_differentiable_and_unbiased_for_small_p():
    torch.manual_seed(1)
    x = torch.ones(10_000, 1, 1, 1, requires_grad=True)
    out = drop_path(x, 0.2)
    out.sum().backward()
    assert abs(out.mean().item() - 1.0) < 0.03
    # The gradient is the mask scaled by 1/keep: 0 or 1.25.
    values = set(torch.unique(x.grad).tolist())
    assert values <= {0.0, 1.25}


def test_drop_path_with_prob_one_drops_everything_without_nan():
    x = torch.randn(4, 3, 2, 2)
    assert torch.equal(drop_path(x, 1.0), torch.zeros_like(x))


def test_drop_path_rejects_probabilities_outside_the_unit_interval():
    x = torch.randn(4, 3, 2, 2)
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=str(bad)):
            drop_path(x, bad)


# ---------------------------------------------------------------------- registry
def test_unknown_op_lists_the_valid_names():
    with pytest.raises(ValueError, match="sep_conv_9x9") as info:
        build("sep_conv_9x9", 4)
    message = str(info.value)
    assert all(name in message for name in ALL_OPS)


def test_registering_a_duplicate_op_is_refused_and_keeps_the_original():
    original, count = OPS.get("sep_conv_3x3"), len(OPS)
    with pytest.raises(ValueError, match="sep_conv_3x3.*already registered"):
        OPS.register("sep_conv_3x3", lambda C, stride, affine: Identity())
    assert OPS.get("sep_conv_3x3") is original
    assert len(OPS) == count


def test_registry_decorator_case_folding_and_bad_names():
    reg: Registry[int] = Registry("thing", case_sensitive=False)

    @reg.register("Alpha")
    def alpha():
        return 1

    assert reg.get("ALPHA") is alpha and "alpha" in reg and 3 not in reg
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", alpha)
    with pytest.raises(ValueError, match="unknown thing 'beta'; valid choices: alpha"):
        reg.get("beta")
    with pytest.raises(ValueError, match="must be a string"):
        reg.get(None)
    strict: Registry[int] = Registry("thing")
    strict.register("A", 1)
    assert "a" not in strict and strict.get("A") == 1
