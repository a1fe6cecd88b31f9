"""humr.data: heatmaps as multinomials, the embedded synthetic set, the real-data readers.

- :mod:`~humr.data.heatmaps`: heatmap argmax and sampling, crop / heatmap / image coordinates.
- :mod:`~humr.data.synthetic`: the synthetic world (:class:`SyntheticConfig`,
  :class:`SyntheticDataset`); :mod:`~humr.data.pose_prior`, :mod:`~humr.data.detector_sim` and
  :mod:`~humr.data.render` are its stages; :mod:`~humr.data.synthetic_stats` measures it.
- :mod:`~humr.data.bedlam_cliff`: BEDLAM / AGORA / 3DPW / EMDB annotations in the BEDLAM-CLIFF
  layout; :mod:`~humr.data.masks`, :mod:`~humr.data.sample_store`, :mod:`~humr.data.augment`,
  :mod:`~humr.data.mixture` serve them; :mod:`~humr.data.precompute` runs ViTPose and the encoder
  once, offline.

The names below load their module on first use.
"""

from humr._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        [
            "heatmap_argmax",
            "sample_heatmaps",
            "heatmap_to_input",
            "input_to_heatmap",
            "heatmap_to_crop",
            "heatmap_to_image",
            "image_to_heatmap",
            "input_to_image",
            "image_to_input",
        ],
        ".heatmaps",
    ),
    **dict.fromkeys(
        ["SyntheticConfig", "SyntheticDataset", "ensure_split", "load_split", "generate_split"], ".synthetic"
    ),
    **dict.fromkeys(["PosePrior", "default_prior", "sample_body_pose"], ".pose_prior"),
    "rasterize": ".render",
    **dict.fromkeys(
        ["BedlamCliffDataset", "DatasetSpec", "FilterConfig", "load_annotations", "preset"], ".bedlam_cliff"
    ),
    **dict.fromkeys(["read_person_mask", "crop_mask", "MaskDistance"], ".masks"),
    **dict.fromkeys(["HeatmapSampleStore", "ReferenceSampleStore", "HeatmapSamples"], ".sample_store"),
    "MixtureDataset": ".mixture",
    **dict.fromkeys(["AugmentConfig", "Photometric"], ".augment"),
    **dict.fromkeys(["HeatmapPrecomputeConfig", "precompute_heatmaps", "precompute_features"], ".precompute"),
    "check_sample": ".fields",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
