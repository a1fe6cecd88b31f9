"""Miniature files in the real formats, for testing code that reads licensed files without them.

The SMPL-X and SMPL model files, the BEDLAM / AGORA / 3DPW / EMDB data sets and the ViTPose
weights need a licence or a download, so neither humr's tests nor a user's own tests can fetch
them. The writers here produce small files with the real keys, shapes, layouts and file formats
and random but well-formed contents, which humr's readers (and ``smplx``) open exactly as they
open the released ones; code paths and costs are the real ones, the values are not.

- :mod:`humr.testing.body_files`: SMPL-X / SMPL model ``.npz`` files, the SMPL-X-to-SMPL
  transfer ``.pkl``, an H36M joint regressor, damaged copies (numpy only).
- :mod:`humr.testing.real_files`: BEDLAM-CLIFF annotation ``.npz`` files with their images and
  person masks, heatmap sample stores in the reference and humr layouts, and a tiny ViTPose
  checkpoint (needs the ``vision`` extra).

Never train or evaluate with these files: they are stand-ins, not bodies or data.

Nothing is imported here, so that ``humr.testing.body_files`` loads without the ``vision`` extra.
"""
