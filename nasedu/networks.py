"""Evaluation networks built from a cell genotype (chapters Introduction, DARTS, NASNet).

``NetworkCIFAR`` and ``NetworkImageNet`` follow the DARTS evaluation setting
(DARTS §3.2–3.3, ``quark0/darts`` ``cnn/model.py``): a stem, ``layers`` cells with
reduction cells at 1/3 and 2/3 of the depth (channels doubled there), an auxiliary
head after the second reduction, global pooling and a linear classifier.

Drop-path is an argument of ``forward`` so that the training engine, which owns the
schedule, passes the current probability in; nothing sets it on the model from outside.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nasedu.genotypes import Genotype
from nasedu.ops import FactorizedReduce, Identity, ReLUConvBN, build, drop_path


class Cell(nn.Module):
    """One cell of a genotype: preprocess both inputs to ``C`` channels, compute the
    intermediate nodes (each the sum of its edges), concatenate ``concat``."""

    def __init__(
        self,
        genotype: Genotype,
        reduction: bool,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction_prev: bool,
        affine: bool = True,
    ):
        super().__init__()
        cell = "reduce" if reduction else "normal"
        self.reduction = reduction
        self.preprocess0 = (
            FactorizedReduce(C_prev_prev, C, affine)
            if reduction_prev
            else ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine)
        )
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine)
        self.nodes = genotype.nodes(cell)
        self.concat = genotype.concat(cell)
        self.multiplier = len(self.concat)
        # Only edges leaving the cell inputs carry the stride of a reduction cell.
        self.edge_ops = nn.ModuleList(
            nn.ModuleList(
                build(op, C, 2 if reduction and i < 2 else 1, affine) for op, i in node
            )
            for node in self.nodes
        )

    def forward(self, s0, s1, drop_prob: float = 0.0):
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # each (B, C, H, W)
        for node, ops in zip(self.nodes, self.edge_ops):
            total = 0
            for (_, i), op in zip(node, ops):
                h = op(states[i])
                if not isinstance(op, Identity):  # DARTS never drops the identity path
                    h = drop_path(h, drop_prob, self.training)
                total = total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)  # (B, m·C, H', W')


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier after the second reduction (DARTS ``model.py``).

    CIFAR: 8×8 input, 5×5 average pool with stride 3. ImageNet: 7×7 input, stride 2 and
    no BN after the 768-channel conv (the official code omits it, "for consistency with
    the experiments in the paper"). Inputs smaller than the pool window (the smoke
    budget's 8×8 digits end at 2×2) are average-pooled to 2×2 instead.
    """

    def __init__(
        self, C: int, num_classes: int, pool_stride: int = 3, final_bn: bool = True
    ):
        super().__init__()
        self.pool = nn.AvgPool2d(
            5, stride=pool_stride, padding=0, count_include_pad=False
        )
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            *([nn.BatchNorm2d(768)] if final_bn else []),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        x = torch.relu(x)
        x = (
            self.pool(x)
            if x.shape[-1] >= 5
            else nn.functional.adaptive_avg_pool2d(x, 2)
        )
        return self.classifier(self.features(x).flatten(1))  # (B, num_classes)


class _CellStack(nn.Module):
    """Cells with reductions at 1/3 and 2/3 depth, an auxiliary head, a classifier."""

    def _build_cells(
        self,
        genotype,
        C,
        layers,
        C_prev_prev,
        C_prev,
        reduction_prev,
        num_classes,
        auxiliary,
        aux_head,
    ):
        self.cells = nn.ModuleList()
        self.aux_index = 2 * layers // 3
        C_curr, C_aux = C, None
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = Cell(
                genotype, reduction, C_prev_prev, C_prev, C_curr, reduction_prev
            )
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == self.aux_index:
                C_aux = C_prev
        self.auxiliary_head = aux_head(C_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def _run_cells(self, s0, s1, drop_prob):
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, drop_prob)
            if (
                i == self.aux_index
                and self.auxiliary_head is not None
                and self.training
            ):
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, logits_aux


class NetworkCIFAR(_CellStack):
    """The DARTS CIFAR-10 evaluation network (DARTS §3.3: 20 cells, 36 channels).

    ``forward(x, drop_prob)`` returns ``(logits, aux_logits)``; ``aux_logits`` is None
    in eval mode or without the auxiliary head.
    """

    def __init__(
        self,
        genotype: Genotype,
        C: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        auxiliary: bool = True,
        in_channels: int = 3,
        stem_multiplier: int = 3,
    ):
        super().__init__()
        self.genotype = genotype
        C_stem = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(C_stem),
        )
        self._build_cells(
            genotype,
            C,
            layers,
            C_stem,
            C_stem,
            False,
            num_classes,
            auxiliary,
            AuxiliaryHead,
        )

    def forward(self, x, drop_prob: float = 0.0):
        s = self.stem(x)  # (B, 3C, H, W)
        return self._run_cells(s, s, drop_prob)


class NetworkImageNet(_CellStack):
    """The DARTS ImageNet mobile-setting network (DARTS §3.3: 14 cells, 48 channels,
    224×224 input, three stride-2 stem convolutions)."""

    def __init__(
        self,
        genotype: Genotype,
        C: int = 48,
        layers: int = 14,
        num_classes: int = 1000,
        auxiliary: bool = True,
        in_channels: int = 3,
    ):
        super().__init__()
        self.genotype = genotype
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=False),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self._build_cells(
            genotype,
            C,
            layers,
            C,
            C,
            True,
            num_classes,
            auxiliary,
            lambda C_aux, n: AuxiliaryHead(C_aux, n, 2, final_bn=False),
        )

    def forward(self, x, drop_prob: float = 0.0):
        s0 = self.stem0(x)  # (B, C, H/4, W/4)
        s1 = self.stem1(s0)  # (B, C, H/8, W/8)
        return self._run_cells(s0, s1, drop_prob)


def count_parameters(model: nn.Module, auxiliary: bool = False) -> int:
    """Number of parameters; the auxiliary head is excluded unless ``auxiliary``,
    as in the papers' tables (DARTS ``utils.count_parameters_in_MB``)."""
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if auxiliary or "auxiliary" not in name
    )


def count_flops(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """FLOPs of one eval-mode forward pass on a zero input of ``input_size``
    (``torch.utils.flop_counter``; one multiply-add counts as two FLOPs)."""
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(input_size, device=param.device, dtype=param.dtype))
    model.train(was_training)
    return counter.get_total_flops()
