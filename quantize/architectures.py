"""CancerNet-SCa-B, -C (as in DESIGN.md) and the ResNet-50 baseline, plus a multiply-accumulate counter.

Every op here converts to fully-integer int8 that XNNPACK takes: max-pool shortcuts (int8 average pooling is
not taken) and bilinear `Resizing` (UpSampling2D lowers to TILE/RESHAPE chains).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from edge_sca.contract import INPUT_NAME, INPUT_SIZE, OUTPUT_NAME

# (width, blocks) per stage; stage 1 keeps the stem's resolution, stages 2-4 halve it in their first block.
B_STAGES = ((48, 2), (96, 3), (160, 6), (256, 2))
C_STAGES = ((48, 2), (80, 3), (160, 4), (320, 2))
C_CONDENSED_STAGES = 3  # condensers after every block of stages 1-3


def _round8(x: float) -> int:
    return max(8, int(round(x / 8.0)) * 8)


def conv(x, filters: int, kernel: int = 1, stride: int = 1, act: bool = True, name: str = ""):
    """Conv2D without bias + BatchNorm (+ ReLU6 unless linear)."""
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x


def dwconv(x, stride: int = 1, act: bool = True, name: str = ""):
    """Depthwise 3x3 without bias + BatchNorm (+ ReLU6)."""
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x


def pepe_block(x, width: int, stride: int, name: str):
    """Projection-expansion-projection-expansion block with a residual shortcut."""
    half = _round8(width / 2)
    in_width = x.shape[-1]
    y = conv(x, half, act=False, name=f"{name}_proj1")
    y = conv(y, width, name=f"{name}_exp1")
    y = dwconv(y, stride=stride, name=f"{name}_dw")
    y = conv(y, half, act=False, name=f"{name}_proj2")
    y = conv(y, width, act=False, name=f"{name}_exp2")
    shortcut = x
    if stride != 1:
        shortcut = layers.MaxPooling2D(2, name=f"{name}_sc_pool")(shortcut)
    if stride != 1 or in_width != width:
        shortcut = conv(shortcut, width, act=False, name=f"{name}_sc")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def attention_condenser(v, name: str):
    """Visual attention condenser: condense, embed, expand, sigmoid, scale with offset, resize, multiply."""
    width, size = v.shape[-1], v.shape[1]
    q = layers.MaxPooling2D(2, name=f"{name}_condense")(v)
    q = conv(q, _round8(width / 4), name=f"{name}_down")
    q = dwconv(q, name=f"{name}_dw")
    q = conv(q, _round8(width / 2), name=f"{name}_embed")
    q = layers.Conv2D(width, 1, use_bias=True, name=f"{name}_up")(q)
    q = layers.Activation("sigmoid", name=f"{name}_sigmoid")(q)
    q = layers.DepthwiseConv2D(1, use_bias=True, depthwise_initializer="ones", bias_initializer="ones",
                               name=f"{name}_scale")(q)
    q = layers.Resizing(size, size, interpolation="bilinear", name=f"{name}_resize")(q)
    return layers.Multiply(name=f"{name}_attend")([v, q])


def _stem_b(x):
    x = conv(x, 24, kernel=3, stride=2, name="stem1")
    x = dwconv(x, name="stem_dw")
    x = conv(x, 24, act=False, name="stem2")
    return layers.MaxPooling2D(2, name="stem_pool")(x)


def _stem_c(x):
    x = conv(x, 24, kernel=3, stride=2, name="stem1")
    x = dwconv(x, stride=2, name="stem_dw")
    return conv(x, 48, act=False, name="stem2")


def _head(x, width: int):
    x = conv(x, width, name="head")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dense(2, activation="softmax", name=OUTPUT_NAME)(x)


def _cancernet(name: str, stem: Callable, stages, condensed: int, head_width: int, size: int) -> keras.Model:
    inputs = keras.Input((size, size, 3), name=INPUT_NAME)
    x = stem(inputs)
    for s, (width, blocks) in enumerate(stages, start=1):
        for b in range(1, blocks + 1):
            stride = 2 if (s > 1 and b == 1) else 1
            x = pepe_block(x, width, stride, name=f"s{s}b{b}")
            if s <= condensed:
                x = attention_condenser(x, name=f"s{s}b{b}_ac")
    return keras.Model(inputs, _head(x, head_width), name=name)


def cancernet_sca_b(size: int = INPUT_SIZE) -> keras.Model:
    """CancerNet-SCa-B: PEPE blocks only (paper: 0.80M params, 0.43 GFLOPs)."""
    return _cancernet("cancernet_sca_b", _stem_b, B_STAGES, 0, 256, size)


def cancernet_sca_c(size: int = INPUT_SIZE) -> keras.Model:
    """CancerNet-SCa-C: PEPE blocks with attention condensers in stages 1-3 (paper: 1.19M, 0.40 GFLOPs)."""
    return _cancernet("cancernet_sca_c", _stem_c, C_STAGES, C_CONDENSED_STAGES, 1024, size)


def resnet50(size: int = INPUT_SIZE) -> keras.Model:
    """The paper's ResNet-50 baseline with a 2-class head, renamed to our tensor names."""
    inputs = keras.Input((size, size, 3), name=INPUT_NAME)
    base = keras.applications.ResNet50(weights=None, include_top=False, input_tensor=inputs, pooling="avg")
    outputs = layers.Dense(2, activation="softmax", name=OUTPUT_NAME)(base.output)
    return keras.Model(inputs, outputs, name="resnet50")


BUILDERS: dict[str, Callable[..., keras.Model]] = {"b": cancernet_sca_b, "c": cancernet_sca_c, "resnet50": resnet50}
#: The paper's budgets: parameters and multiply-accumulates (FLOPs / 2) at 224x224.
PAPER_BUDGETS = {"b": (0.80e6, 0.215e9), "c": (1.19e6, 0.20e9), "resnet50": (23.52e6, 3.86e9)}


def build_model(name: str, size: int = INPUT_SIZE) -> keras.Model:
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(BUILDERS)}")
    return BUILDERS[name](size)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass: convolutions, depthwise convolutions and dense layers."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw
        elif isinstance(layer, layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * cout * kh * kw * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)
