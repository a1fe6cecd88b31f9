"""Prediction on a user's images (humr.inference, recipes/predict.py) and the precompute recipe's CLI."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from humr.config import ExperimentConfig, ModelConfig, config_to_dict
from humr.flows import FlowConfig
from humr.inference import PersonBox, load_model, read_boxes
from humr.testing.body_files import write_smplx_npz
from humr.testing.real_files import write_tiny_vitpose

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
BOXES = [
    ("a.png", (40.0, 20.0, 120.0, 200.0)),
    ("a.png", (150.0, 30.0, 230.0, 190.0)),
    ("b.jpg", (10, 5, 90, 150)),
]


def _recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"humr_recipe_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


TORCH_THREADS = 2  # tests/conftest.py: small models on a shared machine


@pytest.fixture(scope="module")
def vitpose_dir(tmp_path_factory) -> Path:
    return write_tiny_vitpose(tmp_path_factory.mktemp("vitpose") / "tiny", peaked=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint as Lightning writes it (config in hyper_parameters, ``model.*`` state), fake SMPL-X."""
    from humr.training.module import HumrLightning

    d = tmp_path_factory.mktemp("ckpt")
    write_smplx_npz(d / "smplx" / "SMPLX_NEUTRAL.npz", seed=1)
    model = ModelConfig(
        image_features=16, pose_hidden=16, pose_features=8, flow=FlowConfig(num_layers=2, hidden_features=16),
        head_hidden=16,
    )
    config = ExperimentConfig(body="smplx", body_model_path=str(d / "smplx"), model=model)
    with torch.random.fork_rng(devices=[]):  # a fixed initialisation, the global RNG untouched
        torch.manual_seed(0)
        module = HumrLightning(config)
    path = d / "last.ckpt"
    torch.save(
        {"hyper_parameters": {"config": config_to_dict(config)}, "state_dict": module.state_dict()}, path
    )
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, (w, h) in (("a.png", (260, 220)), ("b.jpg", (120, 160))):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.rectangle(img, (w // 4, h // 5), (w // 2, 4 * h // 5), (200, 120, 90), -1)
        cv2.imwrite(str(d / name), img)
    return d


def _csv(path: Path, rows, header: bool = True) -> Path:
    lines = (["image,x0,y0,x1,y1"] if header else []) + [",".join(map(str, [n, *b])) for n, b in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_box_files_json_and_csv_read_alike(tmp_path):
    expected = [PersonBox(n, tuple(float(v) for v in b)) for n, b in BOXES]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"image": n, "box": list(b)} for n, b in BOXES]))
    keyed = tmp_path / "keyed.json"
    keyed.write_text(
        json.dumps({"a.png": [list(BOXES[0][1]), list(BOXES[1][1])], "b.jpg": list(BOXES[2][1])})
    )
    for path in (
        listed,
        keyed,
        _csv(tmp_path / "b.csv", BOXES),
        _csv(tmp_path / "nh.csv", BOXES, header=False),
    ):
        assert read_boxes(path) == expected
    center, side = expected[0].square(1.2)
    np.testing.assert_allclose(center, [80.0, 110.0])
    assert side == pytest.approx(1.2 * 180.0)


@pytest.mark.parametrize(
    "row, message",
    [
        ("a.png,1,2,3", r"line 2: expected 5 fields"),
        ("a.png,1,2,x,4", r"line 2: box coordinates must be numbers"),
        ("a.png,10,2,5,40", r"line 2: expected finite x0 < x1"),
        ("a.png,1,2,nan,40", r"line 2: expected finite x0 < x1"),
    ],
)
def test_bad_box_rows_name_the_file_and_line(tmp_path, row, message):
    path = tmp_path / "boxes.csv"
    path.write_text(f"image,x0,y0,x1,y1\n{row}\n")
    with pytest.raises(ValueError, match=message) as info:
        read_boxes(path)
    assert str(path) in str(info.value)


def test_missing_files_are_clear_errors(tmp_path, images, checkpoint, vitpose_dir):
    from humr.inference import predict_folder

    with pytest.raises(FileNotFoundError, match="boxes: no file"):
        read_boxes(tmp_path / "none.csv")
    missing = _csv(tmp_path / "m.csv", [("c.png", (1, 2, 30, 40))])
    with pytest.raises(FileNotFoundError, match=r"person 0 \(c.png\): image .*c.png not found"):
        predict_folder(images, missing, checkpoint, vitpose_dir, tmp_path / "out")
    outside = _csv(tmp_path / "o.csv", [("b.jpg", (500, 2, 530, 40))])
    with pytest.raises(ValueError, match="lies outside image"):
        predict_folder(images, outside, checkpoint, vitpose_dir, tmp_path / "out")
    boxes = _csv(tmp_path / "ok.csv", BOXES)
    with pytest.raises(FileNotFoundError, match="checkpoint: no file"):
        predict_folder(images, boxes, tmp_path / "none.ckpt", vitpose_dir, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        predict_folder(images, boxes, checkpoint, tmp_path / "no-vitpose", tmp_path / "out")
    with pytest.raises(TypeError):  # options are keyword-only (the recipe passed 11 positionally)
        predict_folder(images, boxes, checkpoint, vitpose_dir, tmp_path / "out", 6)
    with pytest.raises(ValueError, match="export"):
        predict_folder(images, boxes, checkpoint, vitpose_dir, tmp_path / "out", export=["fbx"])


def test_predict_recipe_writes_consistent_hypotheses(tmp_path, images, checkpoint, vitpose_dir):
    from humr.rotations import axis_angle_to_matrix

    boxes = _csv(tmp_path / "boxes.csv", BOXES)
    s = 6
    path = _recipe("predict").main(
        [
            str(checkpoint),
            "--images",
            str(images),
            "--boxes",
            str(boxes),
            "--vitpose",
            str(vitpose_dir),
            "--out",
            str(tmp_path / "out"),
            "--num-hypotheses",
            str(s),
            "--batch-size",
            "2",
            "--no-mesh-plots",  # the stand-in SMPL-X mesh is random triangles: slow to rasterise
            "--export",
            "npz,glb",
        ]
    )
    out = dict(np.load(path))
    assert out["box_index"].tolist() == [0, 1, 2]
    p = len(BOXES)
    assert out["rotmat"].shape == (p, s, 22, 3, 3) and out["log_likelihood"].shape == (p, s)
    assert out["shape"].shape == (p, 11) and out["translation"].shape == (p, 3)
    assert out["image"].tolist() == [n for n, _ in BOXES] and str(out["body"]) == "smplx"
    rot = torch.from_numpy(out["rotmat"]).double()
    torch.testing.assert_close(
        rot @ rot.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(rot), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        axis_angle_to_matrix(torch.from_numpy(out["axis_angle"]).double()), rot, atol=1e-5, rtol=0
    )
    # 2D keypoints are the pinhole projection of the camera-frame keypoints (principal point = image centre).
    kp3, f = out["keypoints_3d"], out["focal"][:, None, None, None]
    proj = f * kp3[..., :2] / kp3[..., 2:] + out["image_size"][:, None, None] / 2
    np.testing.assert_allclose(out["keypoints_2d"], proj, rtol=1e-4, atol=1e-2)
    # The stored log-likelihoods equal the flow's density of the stored poses, evaluated the other way round.
    model, config = load_model(checkpoint)
    from humr.data.precompute import load_vitpose
    from humr.inference import Predictor

    predictor = Predictor(model, load_vitpose(vitpose_dir), config.data.image_size)
    people = read_boxes(boxes)
    pics = [cv2.cvtColor(cv2.imread(str(images / b.image)), cv2.COLOR_BGR2RGB) for b in people]
    with torch.no_grad():
        context = model.condition(predictor.batch(pics, people))
        pose6d = torch.from_numpy(out["pose6d"]) - model.pose_offset
        logp = torch.stack([model.flow.log_prob(pose6d[:, k], context) for k in range(s)], 1)
    np.testing.assert_allclose(out["log_likelihood"], logp.numpy(), rtol=1e-3, atol=1e-2)
    # The detector pose lies in the detector's box around each person.
    centers, sides = out["center"], out["box_size"]
    assert (
        np.abs(out["detector_keypoints"][..., :2] - centers[:, None]) <= sides[:, None, None] * 2 / 3 + 1
    ).all()
    plots = sorted((tmp_path / "out" / "plots").glob("*.png"))
    assert len(plots) == p and all(cv2.imread(str(f)).shape == (512, 512, 3) for f in plots)
    # --export: the documented npz holds the same hypotheses, and one GLB per chosen mesh
    from humr.export import load_npz

    exported = load_npz(tmp_path / "out" / "hypotheses.npz")
    np.testing.assert_array_equal(exported["rotmat"], out["rotmat"])
    np.testing.assert_allclose(exported["keypoints_2d"], out["keypoints_2d"], rtol=1e-6, atol=1e-3)
    kp = out["keypoints_3d"]
    spread = np.linalg.norm(kp - kp.mean(1, keepdims=True), axis=-1).mean(1) * 1000
    np.testing.assert_allclose(exported["joint_spread"], spread, rtol=1e-3, atol=1e-3)
    chosen = exported["selected_index"]
    assert exported["body"] == "smplx" and ((chosen >= 0) & (chosen < s)).all()
    meshes = sorted(f.name for f in (tmp_path / "out" / "meshes").glob("*.glb"))
    assert len(meshes) == p * (2 + 4) and meshes[0] == "0000_a_mode.glb"


def test_precompute_heatmaps_recipe_writes_a_store(tmp_path, vitpose_dir):
    from humr.data.sample_store import HeatmapSampleStore
    from humr.testing.real_files import write_fake_dataset

    write_fake_dataset(tmp_path / "data", "agora", num_rows=3, samples_layout=None)
    _recipe("precompute_heatmaps").main(
        [
            "--data-root",
            str(tmp_path / "data"),
            "--dataset",
            "agora-bfh",
            "--vitpose",
            str(vitpose_dir),
            "--out",
            str(tmp_path / "s"),
            "--num-samples",
            "8",
            "--batch-size",
            "2",
        ]
    )
    store = HeatmapSampleStore(tmp_path / "s" / "agora-bfh")
    assert store.store.done().all() and store(2).xy.shape == (17, 8, 2)


def test_predict_with_the_anny_body_draws_mesh_pictures(tmp_path, images, vitpose_dir):
    from humr.inference import predict_folder
    from humr.training.module import HumrLightning

    model = ModelConfig(
        image_features=16, pose_hidden=16, pose_features=8, flow=FlowConfig(num_layers=2, hidden_features=16),
        head_hidden=16,
    )
    config = ExperimentConfig(body="anny", model=model)
    with torch.random.fork_rng(devices=[]):  # a fixed initialisation, the global RNG untouched
        torch.manual_seed(0)
        module = HumrLightning(config)
    ckpt = tmp_path / "anny.ckpt"
    state = {"hyper_parameters": {"config": config_to_dict(config)}, "state_dict": module.state_dict()}
    torch.save(state, ckpt)
    boxes = _csv(tmp_path / "boxes.csv", BOXES[2:])
    run = predict_folder(
        images, boxes, ckpt, vitpose_dir, tmp_path / "out", num_hypotheses=4, progress=False
    )
    assert not run.failed and run.num_persons == 1
    with np.load(run.npz) as out:
        assert out["rotmat"].shape[:2] == (1, 4) and str(out["body"]) == "anny"
    names = sorted(p.name for p in (tmp_path / "out" / "plots").glob("*.png"))
    assert len(names) == 2 and names[0].startswith("0000_b_joint") and names[1] == "0000_b_meshes.png"


def test_a_corrupt_image_is_skipped_and_reported_and_the_others_written(
    tmp_path, images, checkpoint, vitpose_dir, capsys
):
    """One bad image among several used to abort the whole run with no output (issue 14.11)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes((images / name).read_bytes())
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # a PNG header, then junk
    rows = [BOXES[0], ("c.png", (1, 2, 30, 40)), BOXES[2], ("b.jpg", (500, 2, 530, 40)),
            ("d.png", (1, 2, 3, 4))]
    boxes = _csv(tmp_path / "boxes.csv", rows)
    argv = [str(checkpoint), "--images", str(folder), "--boxes", str(boxes), "--vitpose", str(vitpose_dir),
            "--out", str(tmp_path / "out"), "--num-hypotheses", "3", "--no-plots"]
    with pytest.raises(SystemExit) as info:
        _recipe("predict").main(argv)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "skipped person 1 (c.png): cannot decode" in err
    assert "skipped person 3 (b.jpg): box" in err and "lies outside image" in err
    assert "skipped person 4 (d.png): image" in err and "2 of 5 persons predicted, 3 failed" in err
    with np.load(tmp_path / "out" / "predictions.npz") as out:
        assert out["box_index"].tolist() == [0, 2] and out["image"].tolist() == ["a.png", "b.jpg"]


def test_images_are_decoded_once_and_windows_predict_as_full_images(
    tmp_path, images, checkpoint, vitpose_dir, monkeypatch
):
    from humr.data.precompute import load_vitpose
    from humr.inference import Predictor, predict_folder

    rng = np.random.default_rng(1)
    big = rng.integers(0, 255, (900, 1200, 3), dtype=np.uint8)
    cv2.rectangle(big, (300, 200), (420, 560), (200, 120, 90), -1)
    cv2.imwrite(str(tmp_path / "big.png"), big)
    (tmp_path / "b.jpg").write_bytes((images / "b.jpg").read_bytes())
    rows = [("big.png", (280.0, 180.0, 440.0, 580.0)), ("big.png", (900.0, 700.0, 1190.0, 895.0)), BOXES[2]]
    boxes = _csv(tmp_path / "b.csv", rows)
    decoded = []
    imread = cv2.imread
    monkeypatch.setattr(cv2, "imread", lambda path, *a: decoded.append(Path(path).name) or imread(path, *a))
    predict_folder(tmp_path, boxes, checkpoint, vitpose_dir, tmp_path / "out", num_hypotheses=2, plots=False,
                   progress=False)
    assert decoded == ["big.png", "b.jpg"]  # big.png holds two boxes: decoded once (it was once per box)
    # the window a box's crops read gives the same model input and hypotheses as the whole image
    model, config = load_model(checkpoint)
    predictor = Predictor(model, load_vitpose(vitpose_dir), config.data.image_size)
    people = read_boxes(boxes)
    full = [cv2.cvtColor(imread(str(tmp_path / b.image)), cv2.COLOR_BGR2RGB) for b in people]
    cut = [predictor.window(img, b) for img, b in zip(full, people)]
    assert cut[0][0].size < full[0].size / 3 and cut[1][0].size < full[1].size / 3  # the big image's people
    sizes = np.array([[img.shape[1], img.shape[0]] for img in full], np.float64)
    whole = predictor(full, people, 3, generator=torch.Generator().manual_seed(1))
    parts = predictor([w for w, _ in cut], people, 3, generator=torch.Generator().manual_seed(1),
                      offsets=np.stack([o for _, o in cut]), image_sizes=sizes)
    for key in ("center", "image_size", "focal", "detector_keypoints", "crop"):
        np.testing.assert_allclose(parts[key], whole[key], atol=1e-3, err_msg=key)
    np.testing.assert_allclose(parts["keypoints_2d"], whole["keypoints_2d"], rtol=1e-4, atol=1e-2)
