"""humr.model: the network of Fig. 2 and what it returns.

- :class:`HumrModel`: image encoder, condition (image features, 2D detector pose, CLIFF bbox
  information), the conditional flow over joint rotations, and the shape / camera head.
- :class:`Hypotheses`: the mode and the samples of a forward pass, with their keypoints, meshes,
  per-joint uncertainty and selection.
- :class:`PoseRegressor`: the deterministic head of the regressor baseline.
- Image encoders: :class:`SmallCNNEncoder` (CPU default), :class:`HRNetW48Encoder` (the paper's).
"""

from humr._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["HumrModel", "ConditionEncoder", "build_image_encoder"], ".humr_model"),
    "Hypotheses": ".hypotheses",
    "PoseRegressor": ".regressor",
    "ShapeCameraHead": ".heads",
    "SmallCNNEncoder": ".small_cnn",
    **dict.fromkeys(["HRNetEncoder", "HRNetW48Encoder", "load_hrnet_checkpoint"], ".encoders"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
