"""NAS-RL's layer-wise CNN space and its child network (chapter *NAS-RL*).

Zoph & Le (ICLR 2017, arXiv:1611.01578) let the controller describe a plain
convolutional network one layer at a time (§3.1, Fig. 2): filter height, filter
width, stride height, stride width and number of filters per layer. §3.3 adds skip
connections through *anchor points*: at layer i the controller emits one sigmoid per
earlier layer j, P(j feeds i) = sigmoid(vᵀ tanh(W_prev h_j + W_curr h_i)), and the
child network is wired by four rules:

1. a layer with several inputs concatenates them in depth;
2. a layer with no input takes the image;
3. every layer no other layer consumes is concatenated into the final hidden state,
   which goes to the classifier;
4. inputs of different sizes are zero-padded to the same size.

Each layer is a convolution followed by batch normalisation and ReLU (§3.3, last
paragraph: "the convolutional layers ... with rectified linear units, batch
normalization and skip connections"; the order conv → BN → ReLU is nasedu's choice).

The value sets come from §4.1 as quoted by secondary sources (``paper-settings.md``
§1, UNVERIFIED against the PDF): filter height and width in {1, 3, 5, 7}, number of
filters in {24, 36, 48, 64}, and strides either fixed to 1 or predicted in {1, 2, 3}
(the paper's two CIFAR-10 experiments).

The space is data (``LayerwiseSpace``); an architecture is a frozen
``LayerwiseArchitecture`` that validates itself, round-trips through JSON, hashes
canonically and draws itself; ``build_network`` turns it into an ``nn.Module``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasedu.strategies.controller import Action, Choice, Decision, Skips

FILTER_SIZES = (1, 3, 5, 7)  # NAS-RL §4.1 (secondary quote, UNVERIFIED)
NUM_FILTERS = (24, 36, 48, 64)  # NAS-RL §4.1 (secondary quote, UNVERIFIED)
STRIDES = (1, 2, 3)  # NAS-RL §4.1, the "predict strides" experiment (UNVERIFIED)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------- architecture
@dataclass(frozen=True)
class Layer:
    """One convolutional layer: filter (height × width), number of filters, strides,
    and the indices of the earlier layers it takes as input (empty: the image)."""

    filter_height: int
    filter_width: int
    filters: int
    stride_height: int = 1
    stride_width: int = 1
    inputs: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["inputs"] = list(self.inputs)
        return data


@dataclass(frozen=True)
class LayerwiseArchitecture:
    """A NAS-RL child network: a sequence of ``Layer`` s with anchor-point inputs
    (chapter *NAS-RL*). The constructor normalises (dicts → ``Layer``, lists → tuples)
    and calls ``validate``."""

    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        try:
            layers = tuple(
                layer if isinstance(layer, Layer) else Layer(**layer)
                for layer in self.layers
            )
        except TypeError as error:
            raise ValueError(f"malformed layer list {self.layers!r}: {error}") from None
        layers = tuple(dataclasses.replace(x, inputs=tuple(x.inputs)) for x in layers)
        object.__setattr__(self, "layers", layers)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value: positive odd filter sizes
        (odd, so that "same" padding keeps the centre), positive filter and stride
        counts, inputs that are distinct earlier layers listed in increasing order.
        (Membership in a space's value sets is ``LayerwiseSpace.validate``.)"""
        if not self.layers:
            raise ValueError("an architecture needs at least one layer")
        for i, layer in enumerate(self.layers):
            for name in ("filter_height", "filter_width"):
                k = getattr(layer, name)
                if not _is_int(k) or k < 1 or k % 2 == 0:
                    raise ValueError(
                        f"layer {i}: {name} {k!r} must be a positive odd integer "
                        f"(the paper's choices: {FILTER_SIZES})"
                    )
            for name in ("filters", "stride_height", "stride_width"):
                v = getattr(layer, name)
                if not _is_int(v) or v < 1:
                    raise ValueError(
                        f"layer {i}: {name} {v!r} must be a positive integer"
                    )
            inputs = layer.inputs
            if any(not _is_int(j) for j in inputs) or list(inputs) != sorted(
                set(inputs)
            ):
                raise ValueError(
                    f"layer {i}: inputs {list(inputs)} must be distinct layer "
                    f"indices in increasing order"
                )
            if any(not 0 <= j < i for j in inputs):
                raise ValueError(
                    f"layer {i}: inputs {list(inputs)} must be earlier layers "
                    f"0..{i - 1}"
                )

    def __len__(self) -> int:
        return len(self.layers)

    def outputs(self) -> tuple[int, ...]:
        """Layers no other layer consumes: concatenated into the final hidden state
        (§3.3, rule 3). The last layer is always among them."""
        used = {j for layer in self.layers for j in layer.inputs}
        return tuple(i for i in range(len(self.layers)) if i not in used)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {"layers": [layer.to_dict() for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerwiseArchitecture:
        if not isinstance(data, dict) or "layers" not in data:
            raise ValueError(
                f"architecture JSON needs a 'layers' list, got {str(data)[:80]}"
            )
        layers = []
        for i, item in enumerate(data["layers"]):
            if not isinstance(item, dict):
                raise ValueError(f"layer {i} must be an object, got {item!r}")
            item = dict(item)
            item["inputs"] = tuple(item.get("inputs", ()))
            layers.append(item)
        return cls(tuple(layers))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LayerwiseArchitecture:
        return cls.from_dict(json.loads(text))

    def hash(self) -> str:
        """A canonical hash (layer order is the architecture: no symmetry to remove)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ drawing
    def label(self, i: int) -> str:
        layer = self.layers[i]
        stride = (
            ""
            if (layer.stride_height, layer.stride_width) == (1, 1)
            else f", stride {layer.stride_height}×{layer.stride_width}"
        )
        return (
            f"{i}: {layer.filter_height}×{layer.filter_width}, {layer.filters}{stride}"
        )

    def draw(self, engine: str = "auto", title: str | None = None):
        """Draw the child network (Graphviz SVG when ``dot`` exists, else matplotlib):
        image at the top, one box per layer labelled ``i: h×w, filters, stride``,
        an arrow per input, and the concatenated final hidden state at the bottom."""
        from nasedu.viz import _check_engine

        if _check_engine(engine) == "graphviz":
            return self._graphviz(title)
        return self._matplotlib(title)

    def svg(self, title: str | None = None) -> str:
        """The drawing as an inline SVG string (for precomputed widgets)."""
        from nasedu.viz import _bare_svg

        drawing = self.draw(title=title)
        if hasattr(drawing, "pipe"):
            return _bare_svg(drawing.pipe(format="svg", encoding="utf-8"))
        import io

        import matplotlib
        import matplotlib.pyplot as plt

        buffer = io.StringIO()
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            drawing.savefig(buffer, format="svg", facecolor="white")
        plt.close(drawing)
        return _bare_svg(buffer.getvalue())

    def _edges(self) -> list[tuple[str, str]]:
        edges = []
        for i, layer in enumerate(self.layers):
            sources = [f"L{j}" for j in layer.inputs] or ["image"]
            edges += [(s, f"L{i}") for s in sources]
        edges += [(f"L{i}", "out") for i in self.outputs()]
        return edges

    def _graphviz(self, title: str | None):
        import graphviz

        g = graphviz.Digraph(
            graph_attr={"rankdir": "TB", "label": title or "", "labelloc": "t"},
            node_attr={"shape": "box", "style": "rounded,filled", "fontsize": "11"},
        )
        g.node("image", "image", fillcolor="#dddddd")
        for i, layer in enumerate(self.layers):
            strided = (layer.stride_height, layer.stride_width) != (1, 1)
            g.node(
                f"L{i}", self.label(i), fillcolor="#f4c7a1" if strided else "#a9cce3"
            )
        g.node("out", "concat → classifier", fillcolor="#d5f5e3")
        for a, b in self._edges():
            g.edge(a, b)
        return g

    def _matplotlib(self, title: str | None):
        import matplotlib.pyplot as plt

        n = len(self.layers)
        y = {"image": n + 1, **{f"L{i}": n - i for i in range(n)}, "out": 0}
        names = {"image": "image", "out": "concat → classifier"}
        names.update({f"L{i}": self.label(i) for i in range(n)})
        fig, ax = plt.subplots(figsize=(3.4, 0.45 * (n + 2) + 0.4))
        for a, b in self._edges():
            gap = y[a] - y[b]
            style = "arc3,rad=0" if gap == 1 else f"arc3,rad={-0.12 * gap:.2f}"
            ax.annotate(
                "",
                xy=(0, y[b] + 0.25),
                xytext=(0, y[a] - 0.25),
                arrowprops={"arrowstyle": "->", "connectionstyle": style, "lw": 0.8},
            )
        for key, text in names.items():
            ax.text(
                0,
                y[key],
                text,
                ha="center",
                va="center",
                fontsize=9,
                bbox={"boxstyle": "round", "fc": "#a9cce3", "lw": 0.5},
            )
        ax.set_xlim(-1.5, 1.5)
        ax.set_ylim(-0.7, n + 1.7)
        ax.axis("off")
        if title:
            ax.set_title(title, fontsize=10)
        plt.close(fig)
        return fig


# --------------------------------------------------------------------------- space
@dataclass(frozen=True)
class LayerwiseSpace:
    """NAS-RL's CNN space at a given depth (§3.1, §3.3, §4.1).

    Args:
        num_layers: the depth of the architectures the controller emits now (the
            search grows it on a schedule, §3.1; ``dataclasses.replace`` gives the
            space at another depth).
        filter_heights, filter_widths, num_filters: the value sets (§4.1).
        strides: ``(1,)`` fixes every stride to 1 (no stride tokens are emitted);
            ``(1, 2, 3)`` lets the controller predict stride height and width.
        skips: whether each layer has an anchor point (§3.3).
    """

    name: str = "nas_rl_layerwise"
    num_layers: int = 6  # the schedule's start (secondary, UNVERIFIED)
    filter_heights: tuple[int, ...] = FILTER_SIZES
    filter_widths: tuple[int, ...] = FILTER_SIZES
    num_filters: tuple[int, ...] = NUM_FILTERS
    strides: tuple[int, ...] = (1,)
    skips: bool = True

    def __post_init__(self) -> None:
        if not _is_int(self.num_layers) or self.num_layers < 1:
            raise ValueError(
                f"num_layers must be an integer >= 1, got {self.num_layers!r}"
            )
        for name in ("filter_heights", "filter_widths", "num_filters", "strides"):
            values = tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            if not values or any(not _is_int(v) or v < 1 for v in values):
                raise ValueError(f"{name} must be positive integers, got {values!r}")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} has repeated values: {values!r}")
        for name in ("filter_heights", "filter_widths"):
            if any(v % 2 == 0 for v in getattr(self, name)):
                raise ValueError(f"{name} must be odd, got {getattr(self, name)!r}")

    # ------------------------------------------------------------------ controller
    def kinds(self) -> dict[str, int]:
        """Token kinds and their sizes: one softmax head each (``Controller(kinds=)``)."""
        kinds = {
            "filter_height": len(self.filter_heights),
            "filter_width": len(self.filter_widths),
        }
        if self.predicts_strides:
            kinds.update(
                stride_height=len(self.strides), stride_width=len(self.strides)
            )
        kinds["filters"] = len(self.num_filters)
        return kinds

    @property
    def predicts_strides(self) -> bool:
        return len(self.strides) > 1

    def _layer_decisions(self, i: int) -> list[Decision]:
        # Fig. 4: each layer starts with its anchor point (i sigmoids, one per earlier
        # layer), then the layer's tokens in Fig. 2's order.
        out: list[Decision] = [Skips(i)] if self.skips else []
        out += [Choice(k, n) for k, n in self.kinds().items()]
        return out

    def decisions(self, num_layers: int | None = None) -> list[Decision]:
        """The controller's tokens for ``num_layers`` layers (default: the space's)."""
        n = self.num_layers if num_layers is None else num_layers
        return [d for i in range(n) for d in self._layer_decisions(i)]

    def _values(self, kind: str) -> tuple[int, ...]:
        return {
            "filter_height": self.filter_heights,
            "filter_width": self.filter_widths,
            "stride_height": self.strides,
            "stride_width": self.strides,
            "filters": self.num_filters,
        }[kind]

    def decode(self, actions: Sequence[Action]) -> LayerwiseArchitecture:
        """Actions (one per decision, any depth) → architecture."""
        per_layer = len(self._layer_decisions(1))
        if not actions or len(actions) % per_layer:
            raise ValueError(
                f"{len(actions)} actions do not make whole layers of {per_layer}"
            )
        layers = []
        for i in range(len(actions) // per_layer):
            chunk = list(actions[i * per_layer : (i + 1) * per_layer])
            inputs: tuple[int, ...] = ()
            if self.skips:
                bits = tuple(chunk.pop(0))
                if len(bits) != i:
                    raise ValueError(f"layer {i}: {len(bits)} skip bits, expected {i}")
                inputs = tuple(j for j, b in enumerate(bits) if b)
            values = {
                kind: self._values(kind)[int(a)]
                for kind, a in zip(self.kinds(), chunk, strict=True)
            }
            stride = {"stride_height": 1, "stride_width": 1}
            if not self.predicts_strides:
                stride = {k: self.strides[0] for k in stride}
            layers.append(Layer(**{**stride, **values}, inputs=inputs))
        return LayerwiseArchitecture(tuple(layers))

    def encode(self, architecture: LayerwiseArchitecture) -> list[Action]:
        """The inverse of ``decode`` (checked: a value outside the space raises)."""
        self.validate(architecture)
        actions: list[Action] = []
        for i, layer in enumerate(architecture.layers):
            if self.skips:
                actions.append(tuple(int(j in layer.inputs) for j in range(i)))
            for kind in self.kinds():
                actions.append(self._values(kind).index(getattr(layer, kind)))
        return actions

    def validate(self, architecture: LayerwiseArchitecture) -> None:
        """Raise ``ValueError`` if ``architecture`` is not in this space (any depth)."""
        for i, layer in enumerate(architecture.layers):
            if not self.skips and layer.inputs:
                raise ValueError(f"layer {i} has inputs but the space has no skips")
            for kind in ("filter_height", "filter_width", "filters"):
                if getattr(layer, kind) not in self._values(kind):
                    raise ValueError(
                        f"layer {i}: {kind} {getattr(layer, kind)} not in "
                        f"{self._values(kind)}"
                    )
            for kind in ("stride_height", "stride_width"):
                if getattr(layer, kind) not in self.strides:
                    raise ValueError(
                        f"layer {i}: {kind} {getattr(layer, kind)} not in {self.strides}"
                    )

    # ------------------------------------------------------------------ SearchSpace
    def sample(self, rng: random.Random) -> LayerwiseArchitecture:
        """Uniform sample at the space's depth: every skip bit a fair coin and every
        token uniform (the random-search baseline)."""
        actions: list[Action] = []
        for d in self.decisions():
            if isinstance(d, Skips):
                actions.append(tuple(rng.randrange(2) for _ in range(d.count)))
            else:
                actions.append(rng.randrange(d.size))
        return self.decode(actions)

    def to_json(self, architecture: LayerwiseArchitecture) -> dict[str, Any]:
        return architecture.to_dict()

    def from_json(self, data: dict[str, Any]) -> LayerwiseArchitecture:
        architecture = LayerwiseArchitecture.from_dict(data)
        self.validate(architecture)
        return architecture

    def size(self, num_layers: int | None = None) -> int:
        """Number of distinct architectures of ``num_layers`` layers."""
        n = self.num_layers if num_layers is None else num_layers
        per_layer = 1
        for size in self.kinds().values():
            per_layer *= size
        skip_bits = n * (n - 1) // 2 if self.skips else 0
        return per_layer**n * 2**skip_bits


# --------------------------------------------------------------------------- network
def pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Zero-pad ``x`` (B, C, h, w) to (B, C, height, width), split evenly between the
    two sides (§3.3, rule 4: "inputs ... zero-padded ... to have the same sizes")."""
    dh, dw = height - x.shape[2], width - x.shape[3]
    if dh < 0 or dw < 0:
        raise ValueError(f"cannot pad {tuple(x.shape[2:])} down to {(height, width)}")
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


def concat_padded(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate feature maps in depth after zero-padding them to the largest height
    and width among them (§3.3, rules 1 and 4)."""
    if len(tensors) == 1:
        return tensors[0]
    height = max(t.shape[2] for t in tensors)
    width = max(t.shape[3] for t in tensors)
    return torch.cat([pad_to(t, height, width) for t in tensors], dim=1)


class LayerwiseNetwork(nn.Module):
    """The child network of a ``LayerwiseArchitecture`` (NAS-RL §3.3).

    Each layer: inputs concatenated in depth (zero-padded to the largest size), or
    the image if it has none; then conv (h × w, "same" padding, its strides) → BN →
    ReLU. The layers nobody consumes are concatenated into the final hidden state,
    global-average-pooled and classified by one linear layer (the classifier's form
    is not given in the text read; global pooling keeps it independent of strides).
    """

    def __init__(
        self,
        architecture: LayerwiseArchitecture,
        in_channels: int = 3,
        num_classes: int = 10,
    ):
        super().__init__()
        self.architecture = architecture
        channels: list[int] = []
        self.convs = nn.ModuleList()
        for layer in architecture.layers:
            c_in = (
                sum(channels[j] for j in layer.inputs) if layer.inputs else in_channels
            )
            self.convs.append(
                nn.Sequential(
                    nn.Conv2d(
                        c_in,
                        layer.filters,
                        (layer.filter_height, layer.filter_width),
                        stride=(layer.stride_height, layer.stride_width),
                        padding=(layer.filter_height // 2, layer.filter_width // 2),
                        bias=False,  # BN follows
                    ),
                    nn.BatchNorm2d(layer.filters),
                    nn.ReLU(inplace=False),
                )
            )
            channels.append(layer.filters)
        self.outputs = architecture.outputs()
        self.out_channels = sum(channels[i] for i in self.outputs)
        self.classifier = nn.Linear(self.out_channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The final hidden state (B, out_channels, H', W') before pooling."""
        states: list[torch.Tensor] = []
        for layer, conv in zip(self.architecture.layers, self.convs, strict=True):
            inputs = [states[j] for j in layer.inputs] if layer.inputs else [x]
            states.append(conv(concat_padded(inputs)))  # (B, filters, h_i, w_i)
        return concat_padded([states[i] for i in self.outputs])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.features(x)  # (B, out_channels, H', W')
        return self.classifier(hidden.mean(dim=(2, 3)))  # (B, num_classes)


def build_network(
    architecture: LayerwiseArchitecture | dict[str, Any],
    in_channels: int = 3,
    num_classes: int = 10,
) -> LayerwiseNetwork:
    """The child network of ``architecture`` (an object or its JSON dict)."""
    if isinstance(architecture, dict):
        architecture = LayerwiseArchitecture.from_dict(architecture)
    return LayerwiseNetwork(architecture, in_channels, num_classes)


def output_size(architecture: LayerwiseArchitecture, size: int) -> tuple[int, int]:
    """Spatial size of the final hidden state for a ``size`` × ``size`` image,
    computed by hand (the oracle of the shape tests): a layer's output is
    ceil(input / stride) per axis, and concatenation pads to the maximum."""
    sizes: list[tuple[int, int]] = []
    for layer in architecture.layers:
        h, w = (
            (
                max(sizes[j][0] for j in layer.inputs),
                max(sizes[j][1] for j in layer.inputs),
            )
            if layer.inputs
            else (size, size)
        )
        sizes.append((-(-h // layer.stride_height), -(-w // layer.stride_width)))
    outs = [sizes[i] for i in architecture.outputs()]
    return max(h for h, _ in outs), max(w for _, w in outs)
