"""Real data in training and evaluation: configs, mixtures, one training step, the Tables 1/2 protocols.

Everything runs on miniature data sets in the real formats (``humr.testing.real_files``) and stand-in
SMPL-X / SMPL files (``humr.testing.body_files``): random bodies, real code paths.
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from humr.config import PAPER_FULL, DataConfig, EvalConfig, ModelConfig
from humr.data.fields import check_sample
from humr.data.mixture import MixtureDataset
from humr.experiment.real_data import (
    build_real_datasets,
    check_real_data_config,
    evaluation_protocol,
    train_specs,
)
from humr.flows import FlowConfig
from humr.testing.body_files import write_h36m_regressor, write_smpl_npz, write_smplx_npz
from humr.testing.real_files import write_fake_dataset

SETTINGS = settings(max_examples=25, deadline=None)
GENDER_SEEDS = {"NEUTRAL": 11, "MALE": 12, "FEMALE": 13}


TORCH_THREADS = 2  # tests/conftest.py: small models on a shared machine


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A reference ``data/`` root: two BEDLAM scenes, AGORA, 3DPW train/test, EMDB occlusion subset."""
    root = tmp_path_factory.mktemp("data")
    for i, kind in enumerate(("bedlam", "bedlam_closeup", "agora", "3dpw_train", "3dpw_test", "emdb_occl")):
        rows = 6 if kind in ("3dpw_test", "emdb_occl") else 5
        write_fake_dataset(root, kind, num_rows=rows, seed=i, samples_layout="reference" if i < 4 else None)
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Stand-in SMPL-X, gendered SMPL, H36M regressor and a (sparse) SMPL-X -> SMPL matrix."""
    import scipy.sparse

    d = tmp_path_factory.mktemp("bodies")
    write_smplx_npz(d / "smplx" / "SMPLX_NEUTRAL.npz", seed=1)
    for gender, seed in GENDER_SEEDS.items():
        write_smpl_npz(d / "smpl" / f"SMPL_{gender}.npz", seed=seed)
    write_h36m_regressor(d / "J_regressor_h36m.npy", seed=3, support=50)
    rng = np.random.default_rng(4)
    cols = rng.integers(0, 10475, (6890, 3))
    vals = rng.dirichlet(np.ones(3), 6890)
    matrix = scipy.sparse.csr_matrix(
        (vals.ravel(), (np.repeat(np.arange(6890), 3), cols.ravel())), (6890, 10475)
    )
    with open(d / "smplx2smpl.pkl", "wb") as f:
        pickle.dump({"matrix": matrix}, f)
    return {
        "smplx": d / "smplx",
        "smpl": d / "smpl",
        "h36m": d / "J_regressor_h36m.npy",
        "smplx2smpl": d / "smplx2smpl.pkl",
        "matrix": matrix,
    }


def _eval_config(files, **kw) -> EvalConfig:
    return EvalConfig(
        smpl_model_path=str(files["smpl"]),
        smplx_to_smpl_path=str(files["smplx2smpl"]),
        h36m_regressor_path=str(files["h36m"]),
        **kw,
    )


# ----------------------------------------------------------------------------- configs


def test_bad_data_configs_fail_early_naming_the_field(root, tmp_path):
    ok = DataConfig(dataset="bedlam+agora+3dpw", root=str(root), augment=False)
    check_real_data_config(ok)
    cases = [
        (dict(dataset="bedlam+mpii"), ValueError, "data.dataset: unknown training set 'mpii'"),
        (dict(dataset="agora+agora"), ValueError, "named twice"),
        (dict(root=None), ValueError, "data.root"),
        (dict(root=str(tmp_path / "nowhere")), FileNotFoundError, "data.root"),
        (dict(root=str(tmp_path)), FileNotFoundError, "annotation file of 'bedlam'"),
        (dict(ratios=(0.5, 0.5)), ValueError, "data.ratios: expected 3 values"),
        (dict(ratios=(1.0, -1.0, 1.0)), ValueError, "data.ratios: expected non-negative"),
        (
            dict(features_dir=str(tmp_path), augment=True),
            ValueError,
            "data.features_dir, data.augment",
        ),
        (dict(features_dir=str(tmp_path)), FileNotFoundError, "data.features_dir: no cached features"),
        (dict(samples_dir=str(tmp_path / "nowhere")), FileNotFoundError, "data.samples_dir"),
        (
            dict(samples_dir=str(tmp_path)),
            FileNotFoundError,
            "no heatmap samples of 'closeup-suburba'",
        ),
        (dict(test_dataset="h36m"), ValueError, "data.test_dataset"),
        (dict(test_dataset="emdb"), FileNotFoundError, "data.test_dataset: annotation file"),
    ]
    for changes, error, message in cases:  # a config's own fields are checked when it is built
        with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
            check_real_data_config(replace(ok, **changes))
    with pytest.raises(ValueError, match="body: real training sets are labelled with SMPL-X"):
        build_real_datasets(ok, "anny")


def test_bedlam_means_every_scene_under_the_root_and_samples_are_found(root):
    groups = train_specs(DataConfig(dataset="bedlam+agora+3dpw", root=str(root)))
    assert [g.name for g in groups] == ["bedlam", "agora", "3dpw"]
    assert sorted(s.name for s in groups[0].specs) == ["closeup-suburba", "static-hdri"]
    assert [s.name for s in groups[1].specs] == ["agora-bfh"]
    for group in groups:  # the reference layout under <root>/heatmap_samples is picked up
        assert all(
            s.samples == str(root / "heatmap_samples") and s.samples_layout == "reference"
            for s in group.specs
        )
    assert evaluation_protocol(DataConfig(test_dataset="emdb_occluded")) == "emdb"
    assert evaluation_protocol(DataConfig()) == "3dpw"


def test_items_follow_the_batch_contract(root):
    config = DataConfig(
        dataset="bedlam+agora+3dpw", root=str(root), image_size=64, test_dataset="emdb_occluded"
    )
    train, test = build_real_datasets(config, "smplx")
    for i in range(0, len(train), 4):
        check_sample(train[i], 22, 11)
    item = test[0]
    check_sample(item, 24, 10)
    assert bool(item["mask_valid"]) and item["distance_map"].shape == (96, 96)  # 1.5 x the crop


@pytest.mark.parametrize("test_dataset", ["3dpw_test", "emdb_occluded"])
def test_test_focal_is_estimated_by_default_and_training_keeps_cam_int(root, test_dataset):
    config = DataConfig(
        dataset="agora", root=str(root), image_size=64, test_dataset=test_dataset, augment=False
    )
    train, test = build_real_datasets(config, "smplx")
    _, annotated = build_real_datasets(config, "smplx", test_focal="annotated")
    assert EvalConfig().test_focal == "estimate"
    test_cam = np.load(test.spec.annotation)["cam_int"]
    for i in range(len(test)):
        item, other = test[i], annotated[i]
        row = int(item["index"])
        w, h = item["image_size"].tolist()
        assert float(item["focal"]) == pytest.approx(np.hypot(w, h), rel=1e-6)
        assert float(other["focal"]) == pytest.approx(test_cam[row, 0, 0], rel=1e-6)
    train_cam = np.load(train.datasets[0].spec.annotation)["cam_int"]
    for i in range(len(train)):
        item = train[i]
        assert float(item["focal"]) == pytest.approx(train_cam[int(item["index"]), 0, 0], rel=1e-6)
    with pytest.raises(ValueError, match="eval.test_focal"):
        build_real_datasets(config, "smplx", test_focal="cam_int")


def test_body_joints_reach_every_item_of_a_mixture_or_none(tmp_path):
    # BEDLAM with gtkps, 3DPW train without: every item carries the fields, 3DPW's all invalid.
    for seed, kind in enumerate(("bedlam", "3dpw_train", "3dpw_test")):
        edit = (lambda d: d.pop("gtkps")) if kind == "3dpw_train" else None
        write_fake_dataset(tmp_path / "mixed", kind, num_rows=3, seed=seed, edit=edit)
    config = DataConfig(dataset="bedlam+3dpw", root=str(tmp_path / "mixed"), image_size=64, augment=False)
    train, test = build_real_datasets(config, "smplx")
    names = [d.spec.name for d in train.datasets]
    assert names == ["static-hdri", "3dpw-train-smplx"]
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=len(train))))
    assert batch["body_joints_2d"].shape == (len(train), 22, 2)
    owner = np.searchsorted(np.cumsum(train.counts), np.arange(len(train)), side="right")
    valid = batch["body_joints_2d_valid"].numpy()
    assert valid[owner == 0].all() and not valid[owner == 1].any()
    for i in range(len(train)):
        check_sample(train[i], 22, 11)
    assert "body_joints_2d" not in test[0]  # SMPL test sets never carry SMPL-X joints
    # No file with gtkps: no item carries the fields (the objective falls back to COCO-17).
    write_fake_dataset(tmp_path / "none", "3dpw_train", num_rows=2, edit=lambda d: d.pop("gtkps"))
    write_fake_dataset(tmp_path / "none", "3dpw_test", num_rows=2)
    train, _ = build_real_datasets(replace(config, dataset="3dpw", root=str(tmp_path / "none")), "smplx")
    assert all("body_joints_2d" not in train[i] for i in range(len(train)))


def test_cached_features_reach_train_and_test_items(root, tmp_path):
    from humr.data.bedlam_cliff import BedlamCliffDataset, FilterConfig, preset
    from humr.data.precompute import precompute_features
    from humr.model.encoders import HRNetEncoder

    with torch.random.fork_rng(devices=[]):  # a fixed initialisation, the global RNG untouched
        torch.manual_seed(0)
        encoder = HRNetEncoder(width=8).eval()  # 120 features
    for key in ("agora-bfh", "emdb-p1-occl"):
        data = BedlamCliffDataset(
            preset(key, root, samples=None), crop_size=64, filter=FilterConfig(enabled=False)
        )
        precompute_features(data, encoder, tmp_path / key, batch_size=8, progress=False)
    config = DataConfig(
        dataset="agora",
        root=str(root),
        image_size=64,
        features_dir=str(tmp_path),
        augment=False,
        test_dataset="emdb_occluded",
    )
    train, test = build_real_datasets(config, "smplx")
    for item in (train[0], test[1]):
        with torch.no_grad():
            direct = encoder(item["image"][None])[0]
        torch.testing.assert_close(item["image_features"], direct, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- mixtures


class _Range(torch.utils.data.Dataset):
    def __init__(self, n: int, tag: int) -> None:
        self.n, self.tag = n, tag

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[int, int]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.tag, i


@SETTINGS
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=4), data=st.data())
def test_mixture_counts_follow_the_weights_and_stay_in_range(lengths, data):
    weights = data.draw(st.lists(st.floats(0.0, 5.0), min_size=len(lengths), max_size=len(lengths)))
    if sum(weights) <= 0:
        weights[0] = 1.0
    length = data.draw(st.integers(1, 200))
    mix = MixtureDataset([_Range(n, d) for d, n in enumerate(lengths)], weights, length)
    p = np.asarray(weights) / sum(weights)
    assert mix.counts.sum() == length and (np.abs(mix.counts - length * p) < 1).all()
    u = np.random.default_rng(0).random(length)
    located = [mix.locate(i, u[i]) for i in range(length)]
    got = np.bincount([d for d, _ in located], minlength=len(lengths))
    np.testing.assert_array_equal(got, mix.counts)
    assert all(0 <= item < lengths[d] for d, item in located)


@SETTINGS
@given(lengths=st.lists(st.integers(1, 30), min_size=1, max_size=4), u=st.floats(0.0, 0.999))
def test_mixture_by_size_is_the_concatenation(lengths, u):
    mix = MixtureDataset([_Range(n, d) for d, n in enumerate(lengths)])
    located = [mix.locate(i, u) for i in range(len(mix))]
    assert located == [(d, i) for d, n in enumerate(lengths) for i in range(n)]


def test_mixture_ratios_are_applied_to_real_sets(root):
    config = DataConfig(
        dataset="bedlam+agora", root=str(root), ratios=(1.0, 3.0), augment=False, image_size=64
    )
    train, _ = build_real_datasets(config, "smplx")
    sizes = train.lengths  # static-hdri, closeup-suburba, agora-bfh
    assert len(sizes) == 3 and len(train) == sizes.sum()
    share = train.counts / train.counts.sum()
    assert abs(share[2] - 0.75) <= 1 / len(train) + 1e-9  # AGORA gets 3 of 4 items per epoch
    np.testing.assert_allclose(share[:2].sum(), 0.25, atol=1 / len(train) + 1e-9)
    loader = torch.utils.data.DataLoader(train, batch_size=len(train), shuffle=True)
    names = [s.spec.name for s in train.datasets]
    batch = next(iter(loader))
    # Every agora item carries an AGORA image size and rows of its annotation file.
    owner = np.searchsorted(np.cumsum(train.counts), np.arange(len(train)), side="right")
    assert names[2] == "agora-bfh" and (owner == 2).sum() == train.counts[2]
    assert batch["image"].shape[0] == len(train)


# ----------------------------------------------------------------------------- training and evaluation


def _model(files, body_path: Path):
    from humr.bodies.smplx_body import SMPLXBody
    from humr.model.humr_model import HumrModel

    config = ModelConfig(
        image_features=16, pose_hidden=16, pose_features=8, flow=FlowConfig(num_layers=2, hidden_features=16),
        head_hidden=16,
    )
    with torch.random.fork_rng(devices=[]):  # a fixed initialisation, the global RNG untouched
        torch.manual_seed(0)
        return HumrModel(config, SMPLXBody(body_path)).eval()


def _procrustes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Similarity-align ``x (N, 3)`` to ``y (N, 3)`` (Umeyama), plain numpy."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    u, s, vt = np.linalg.svd(xc.T @ yc)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, 1.0, d])
    r = (u @ fix @ vt).T
    scale = (s * np.diag(fix)).sum() / (xc**2).sum()
    return scale * xc @ r.T + my


@pytest.mark.parametrize("test_dataset", ["3dpw_test", "emdb_occluded"])
def test_protocols_match_a_brute_force_computation(root, files, test_dataset):
    import smplx
    from smplx.utils import Struct

    from humr.experiment.evaluation_real import evaluate_real

    config = DataConfig(dataset="agora", root=str(root), image_size=64, test_dataset=test_dataset)
    _, test = build_real_datasets(config, "smplx")
    model = _model(files, files["smplx"])
    s = 3
    eval_config = _eval_config(files, num_hypotheses=s, batch_size=4, plots=False)
    protocol = evaluation_protocol(config)
    metrics = evaluate_real(model, test, eval_config, protocol, progress=False, seed=5)

    # Brute force: the same hypotheses, dense matrices, smplx's own SMPL in axis-angle for the ground truth.
    batch = torch.utils.data.default_collate([test[i] for i in range(len(test))])
    gen = torch.Generator().manual_seed(5)
    hyps = [
        model({k: v[i : i + 4] for k, v in batch.items()}, s - 1, generator=gen)
        for i in range(0, len(test), 4)
    ]
    rot = torch.cat([h.rotmat for h in hyps])
    shape = torch.cat([h.shape for h in hyps])
    with torch.no_grad():
        verts_x = model.body(rot, shape[:, None].expand(-1, s, -1)).vertices.double().numpy()
    pred_v = np.stack(
        [[files["matrix"] @ v for v in per_image] for per_image in verts_x]
    )  # scipy, mesh by mesh
    ann = test.annotations
    gt_v, gt_j, layers = [], [], {}
    for row in range(len(ann)):
        gender = {"m": "MALE", "f": "FEMALE"}[str(ann.gender[row])[0]]
        if gender not in layers:
            data = dict(np.load(files["smpl"] / f"SMPL_{gender}.npz"))
            layers[gender] = smplx.SMPL(str(files["smpl"]), data_struct=Struct(**data), gender=gender.lower())
        layer = layers[gender]
        pose = torch.from_numpy(ann.pose[row]).float()[None]
        out = layer(
            betas=torch.from_numpy(ann.shape[row]).float()[None],
            global_orient=pose[:, :3],
            body_pose=pose[:, 3:72],
        )
        gt_v.append(out.vertices[0].detach().double().numpy())
        gt_j.append(out.joints[0, :24].detach().double().numpy())
    gt_v = np.stack(gt_v)
    if protocol == "3dpw":
        reg = np.load(files["h36m"]).astype(np.float64)[[6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]]
        gt_j = np.einsum("kv,bvc->bkc", reg, gt_v)
    else:
        reg = np.load(files["smpl"] / "SMPL_NEUTRAL.npz")["J_regressor"].astype(np.float64)
        gt_j = np.stack(gt_j)
    pred_j = np.einsum("kv,bsvc->bskc", reg, pred_v)
    hips = (2, 3) if protocol == "3dpw" else (1, 2)
    pr, gr = pred_j[:, :, hips].mean(2, keepdims=True), gt_j[:, None, hips].mean(2, keepdims=True)
    mpjpe = np.linalg.norm((pred_j - pr) - (gt_j[:, None] - gr), axis=-1).mean(-1) * 1000
    pve = np.linalg.norm((pred_v - pr) - (gt_v[:, None] - gr), axis=-1).mean(-1) * 1000
    pa = np.array(
        [
            [np.linalg.norm(_procrustes(p, g) - g, axis=-1).mean() * 1000 for p in ps]
            for ps, g in zip(pred_j, gt_j)
        ]
    )
    for name, err in (("mpjpe", mpjpe), ("pve", pve), ("pa_mpjpe", pa)):
        np.testing.assert_allclose(metrics[f"{name}_mode"], err[:, 0].mean(), rtol=1e-3)
        np.testing.assert_allclose(metrics[f"{name}_best"], err.min(1).mean(), rtol=1e-3)
    assert metrics["num_images"] == len(test) and metrics["protocol"] == protocol
    if test_dataset == "emdb_occluded":  # masks: the plausibility metrics are defined
        assert 0.0 <= metrics["perc_in"] <= 100.0 and metrics["min_dist"] >= 0.0


def test_missing_evaluation_files_fail_before_loading(files, tmp_path):
    from humr.experiment.evaluation_real import check_real_eval_config

    good = _eval_config(files)
    check_real_eval_config(good, "3dpw")
    with pytest.raises(ValueError, match="eval.h36m_regressor_path"):
        check_real_eval_config(replace(good, h36m_regressor_path=None), "3dpw")
    check_real_eval_config(replace(good, h36m_regressor_path=None), "emdb")  # EMDB does not need it
    check_real_eval_config(replace(good, test_focal="annotated"), "emdb")
    with pytest.raises(ValueError, match="eval.test_focal: expected one of"):
        check_real_eval_config(replace(good, test_focal="cam_int"), "emdb")
    with pytest.raises(FileNotFoundError, match="eval.smpl_model_path"):
        check_real_eval_config(replace(good, smpl_model_path=str(tmp_path / "none")), "emdb")


def _recipe_args(root, files, out: Path) -> list[str]:
    return [
        "--data",
        "bedlam+agora+3dpw",
        "--data.root",
        str(root),
        "--body",
        "smplx",
        "--body-model-dir",
        str(files["smplx"]),
        "--tiny",
        "--model.encoder",
        "small_cnn",
        "--model.freeze_encoder",
        "false",
        "--data.image_size",
        "64",
        "--data.batch_size",
        "4",
        "--steps",
        "1",
        "--output-dir",
        str(out),
        "--data.test_dataset",
        "emdb_occluded",
        "--eval.smpl_model_path",
        str(files["smpl"]),
        "--eval.smplx_to_smpl_path",
        str(files["smplx2smpl"]),
        "--eval.num_hypotheses",
        "3",
        "--eval.plots",
        "false",
    ]


def test_one_training_step_on_real_data(root, files, tmp_path):
    from humr.experiment.cli import parse_config
    from humr.experiment.recipe import defaults_for
    from humr.experiment.run import train
    from humr.inference import load_model

    argv = _recipe_args(root, files, tmp_path / "run")
    config = parse_config(defaults_for(argv), [a for a in argv if a != "--tiny"])
    assert config.model == replace(config.model, encoder="small_cnn") and config.body == "smplx"
    module, last = train(config, progress=False)
    assert last.is_file() and module.trainer.global_step == 1
    model, loaded = load_model(last)  # the Lightning checkpoint reloads without Lightning
    assert loaded == config
    for name, value in module.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)
    # validation during training on real data measures with the test set's protocol (SMPL on EMDB)
    from humr.experiment.run import _validation

    callback = _validation(replace(config, train=replace(config.train, val_every=1, val_images=2)))
    model = module.model.eval()
    metrics = callback.evaluation(model, callback.dataset, callback.config, progress=False, seed=0)
    assert metrics["protocol"] == "emdb" and np.isfinite(metrics["mpjpe_mode"])


@pytest.mark.slow
def test_paper_full_and_evaluate_recipes_on_real_data(root, files, tmp_path, capsys):
    from humr.experiment.recipe import main_evaluate, main_full

    out = tmp_path / "run"
    metrics = main_full(_recipe_args(root, files, out))
    assert np.isfinite(metrics["mpjpe_mode"]) and metrics["num_images"] == 6
    assert (out / "metrics.json").is_file() and "MPJPE" in capsys.readouterr().out
    ckpt = out / "checkpoints" / "last.ckpt"
    again = main_evaluate(
        [str(ckpt), "--data.test_dataset", "3dpw_test", "--eval.h36m_regressor_path", str(files["h36m"])]
    )
    table = capsys.readouterr().out
    assert np.isfinite(again["mpjpe_best"]) and again["protocol"] == "3dpw" and "PA-MPJPE" in table
    assert PAPER_FULL.data.dataset == "bedlam+agora+3dpw"  # the recipe's real-data default is the paper's
