"""Novel pixels and frames unlike the training data in the node: novel_threshold makes novel pixels
novel_cost in ~/cost and obstacles on ~/grid while ~/mask keeps its argmax; shift_threshold flags a
frame in /diagnostics and shift_policy handles it as degraded_policy handles a degraded frame.
Through real rclpy (the node in this process, as in test_node_callbacks.py), against the offline
Segmenter and GroundProjector; the policy, the health report and ClassCosts also without ROS."""

from __future__ import annotations

import shutil
from dataclasses import replace
from types import SimpleNamespace as NS

import cv2
import numpy as np
import pytest
import rclpy
from conftest import make_artifact
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rclpy.context import Context
from rclpy.parameter import Parameter
from rosutil import Peer, image_array, image_cdr, random_rgb
from sensor_msgs.msg import CameraInfo, Image

from offroad_seg_ros.core.artifact import NOVELTY
from offroad_seg_ros.core.classes import ClassTable
from offroad_seg_ros.core.stamps import Stamp
from offroad_seg_ros.ground.projection import CameraModel, CameraPose, ClassCosts, GridSpec, GroundProjector
from offroad_seg_ros.ground.projection import occupancy_values as occupancy
from offroad_seg_ros.inference.segmenter import Segmentation, Segmenter
from offroad_seg_ros.node import node as node_module
from offroad_seg_ros.node.health import OK, WARN, Health
from offroad_seg_ros.node.params import PARAMETERS, load_segmenter
from offroad_seg_ros.node.pipeline import FrameNotes, FramePipeline, apply_policy

H, W = 60, 80
K = [60.0, 0.0, 39.5, 0.0, 60.0, 29.5, 0.0, 0.0, 1.0]
D = [-0.1, 0.01, 0.0, 0.0, 0.0]
POSE = [0.2, 0.0, 1.5, 0.0, 0.35, 0.0]
SPEC = GridSpec(0.1, 20.0, 20.0, max_range=9.0)
GRID = {"publish_grid": True, "camera_pose": POSE, "grid_resolution": 0.1, "grid_size": [20.0, 20.0],
        "max_range": 9.0}


@pytest.fixture(scope="module")
def small_data(synth_root, tmp_path_factory):
    """synth_root's train and val frames at the test frames' size: the novelty statistics are
    fitted at the scale the node then sees."""
    out = tmp_path_factory.mktemp("small")
    for split in ("train", "val"):
        for sub, interpolation in (("Color_Images", cv2.INTER_AREA), ("Segmentation", cv2.INTER_NEAREST)):
            (out / split / sub).mkdir(parents=True)
            for path in sorted((synth_root / split / sub).glob("*.png")):
                image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                cv2.imwrite(str(out / split / sub / path.name), cv2.resize(image, (W, H), interpolation=interpolation))
    return out


@pytest.fixture(scope="module")
def novel_artifact(small_data, tmp_path_factory, table):
    """Random weights with novelty statistics, whose obstacle classes are made rough ground (cost
    100): every obstacle on the grid and every lethal cost then comes from novelty."""
    from offroad_seg_ros.tools.novelty import fit_novelty

    ground = ClassTable([replace(c, group="rough", cost=100) if c.group == "obstacle" else c for c in table.classes])
    art = make_artifact(tmp_path_factory.mktemp("novel") / "tiny", ground)
    fit_novelty(art, small_data, fit_frames=8, frames=3, onnx=False)
    return art


@pytest.fixture(scope="module")
def ordinary_frame(small_data):
    """A validation frame: within the shift threshold of 1.05 below."""
    return cv2.cvtColor(cv2.imread(str(small_data / "val" / "Color_Images" / "000000.png")), cv2.COLOR_BGR2RGB)


@pytest.fixture
def ros():
    ctx = Context()
    rclpy.init(context=ctx)
    peer = Peer(context=ctx)
    nodes = []

    def make(**params):
        defaults = {"device": "cpu", "min_confidence": 0.0, "degraded_policy": "publish", "diagnostics_period": 0.1}
        node = node_module.SegmentationNode(context=ctx, parameter_overrides=[
            Parameter(k, value=v) for k, v in {**defaults, **params}.items()])
        peer.executor.add_node(node)
        nodes.append(node)
        return node

    peer.make = make
    yield peer
    for n in nodes:
        n.destroy_node()
    peer.close()


def _send(ros, node, raw: bytes) -> None:
    """One frame, resent until the node has it; processed and published on return."""
    pub = ros.publisher(Image, "/image")
    ros.wait_for_subscriber(pub)
    before = node.worker.received
    ros.send_until(pub, raw, lambda: node.worker.received > before, every=1.0, what="the frame at the node")
    assert node.worker.idle()


def _info() -> CameraInfo:
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
    info.k, info.d = K, D
    return info


def _offline_grid(seg: Segmenter, known_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    camera = CameraModel(W, H, tuple(K), tuple(D), "plumb_bob")
    costs = ClassCosts(seg.classes, seg.classes.cost_lut(), seg.novel_cost)
    return GroundProjector(camera, CameraPose.from_list(POSE), SPEC).project(known_mask, costs)


def test_novel_pixels_are_lethal_in_cost_and_obstacles_on_the_grid(ros, novel_artifact, tmp_path):
    rgb = random_rgb(H, W, seed=11)  # noise: most of it unlike anything the model was fitted on
    node = ros.make(model=str(novel_artifact), novel_threshold=0.5, **GRID)
    masks, costs = ros.collect(Image, "/segmentation_node/mask"), ros.collect(Image, "/segmentation_node/cost")
    grids = ros.collect(OccupancyGrid, "/segmentation_node/grid")
    pub, info_pub = ros.publisher(Image, "/image"), ros.publisher(CameraInfo, "/camera_info")
    ros.wait_for_subscriber(pub)
    ros.wait_for_subscriber(info_pub)
    stamped = lambda msgs: [m for m in msgs if m.header.stamp.sec == 4]  # noqa: E731
    ros.send_until(pub, image_cdr(rgb, sec=4), lambda: stamped(grids) and stamped(costs) and stamped(masks),
                   before=lambda: info_pub.publish(_info()), what="grid, cost and mask")

    plain_seg = Segmenter(novel_artifact, device="cpu", warmup_size=None, novel_threshold=0)
    plain = plain_seg(rgb, ("mask", "cost", "known_mask"))
    seg = Segmenter(novel_artifact, device="cpu", warmup_size=None, novel_threshold=0.5)
    flagged = seg(rgb, ("mask", "cost", "known_mask"))
    novel = flagged.known_mask == seg.classes.novel_index
    assert 0.5 < novel.mean() < 1.0 and flagged.novel_pixels == novel.sum()
    cost = image_array(stamped(costs)[-1])
    np.testing.assert_array_equal(cost, np.where(novel, 254, plain.cost))  # novel pixels lethal, the rest as before
    assert not (plain.cost == 254).any()
    np.testing.assert_array_equal(image_array(stamped(masks)[-1]), plain.mask)  # the mask keeps its argmax

    grid = np.array(stamped(grids)[-1].data, np.int8)
    want_cost, want_obstacle = _offline_grid(seg, flagged.known_mask)
    np.testing.assert_array_equal(grid, occupancy(want_cost))
    plain_cost, plain_obstacle = _offline_grid(plain_seg, plain.known_mask)
    assert not plain_obstacle.any() and (occupancy(plain_cost) == 100).sum() == 0
    assert want_obstacle.sum() > 100 and (grid == 100).sum() == want_obstacle.sum()  # each novel obstacle lethal

    # A model set at run time is loaded with the same novelty parameters; one without statistics runs
    # without the checks, and /diagnostics says so.
    older = tmp_path / "older"  # the same model before its statistics were fitted
    shutil.copytree(novel_artifact, older, ignore=shutil.ignore_patterns(NOVELTY))
    node.set_parameters([Parameter("model", value=str(older))])
    ros.spin_until(lambda: node.swap.swaps == 1 or node.swap.state == "failed", what="the swap")
    assert node.swap.swaps == 1, node.swap.reason
    assert node.swap.info.novelty.startswith("unavailable: ") and "offroad-seg novelty" in node.swap.info.novelty


@pytest.mark.parametrize("policy", ["publish", "unknown", "drop"])
def test_a_frame_unlike_the_training_data_is_a_warn_and_follows_shift_policy(ros, novel_artifact, ordinary_frame,
                                                                          policy):
    noise = random_rgb(H, W, seed=3)
    node = ros.make(model=str(novel_artifact), novel_threshold=0.0, shift_threshold=1.05, shift_policy=policy)
    masks, costs = ros.collect(Image, "/segmentation_node/mask"), ros.collect(Image, "/segmentation_node/cost")
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    seg = Segmenter(novel_artifact, device="cpu", warmup_size=None, novel_threshold=0, shift_threshold=1.05)
    want = seg(noise, ("mask", "cost"))
    assert want.shifted and not seg(ordinary_frame, ("mask",)).shifted

    _send(ros, node, image_cdr(noise, sec=7))
    ros.spin_until(lambda: diags and "unlike the training data" in diags[-1].status[0].message, what="the warning")
    status = diags[-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == bytes([WARN])
    assert status.message.startswith(f"frame unlike the training data (shift {want.shift:.1f} > {seg.shift_limit:.1f})")
    assert values["shift"] == f"{want.shift:.2f}" and values["shifted_frames"] != "0"
    assert values["shift_policy"] == policy and values["novel_pixels"] == "n/a"  # novel_threshold off

    _send(ros, node, image_cdr(ordinary_frame, sec=8))  # not shifted: published whole, after frame 7's
    ros.spin_until(lambda: any(m.header.stamp.sec == 8 for m in costs), what="the ordinary frame's cost")
    assert (image_array(next(m for m in costs if m.header.stamp.sec == 8)) != 255).all()
    shifted_costs = [image_array(m) for m in costs if m.header.stamp.sec == 7]
    shifted_masks = [image_array(m) for m in masks if m.header.stamp.sec == 7]
    if policy == "drop":
        assert shifted_costs == [] and shifted_masks == []
    else:
        np.testing.assert_array_equal(shifted_masks[0], want.mask)
        np.testing.assert_array_equal(shifted_costs[0], want.cost if policy == "publish" else 255)


def test_the_novelty_parameters_reach_the_segmenter(tiny_artifact, novel_artifact):
    params = {name: default for name, (default, _) in PARAMETERS.items()}
    plain = load_segmenter(str(tiny_artifact), {**params, "device": "cpu", "novel_threshold": 0.5})
    assert plain.novel_limit is None and plain.novelty_status.startswith("unavailable: ")
    with pytest.raises(ValueError, match="publish_novelty needs novelty statistics.*offroad-seg novelty"):
        load_segmenter(str(tiny_artifact), {**params, "device": "cpu", "publish_novelty": True})
    seg = load_segmenter(str(novel_artifact), {**params, "device": "cpu", "novel_threshold": 0.9, "novel_cost": 200,
                                                "shift_threshold": 0.5})
    assert seg.novel_cost == 200 and seg.novel_limit is not None and seg.shift_limit is not None


# -- without ROS ----------------------------------------------------------------------------------
def _segmentation(shifted: bool) -> Segmentation:
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4) % 10
    return Segmentation(mask=mask, cost=mask * 10, known_mask=mask.copy(), novel_pixels=2, shift=7.14,
                        shifted=shifted)


@pytest.mark.parametrize("policy, withheld, unknown", [("publish", False, False), ("unknown", False, True),
                                                       ("drop", True, False)])
def test_apply_policy(policy, withheld, unknown):
    seg = _segmentation(True)
    mask, cost = seg.mask.copy(), seg.cost.copy()
    assert apply_policy(policy, seg) is withheld
    np.testing.assert_array_equal(seg.mask, mask)  # the mask always keeps its argmax
    np.testing.assert_array_equal(seg.cost, 255 if unknown else cost)
    np.testing.assert_array_equal(seg.known_mask, 255 if unknown else mask)


@pytest.mark.parametrize("degraded, shifted, degraded_policy, shift_policy, want", [
    (False, False, "drop", "drop", "whole"),
    (False, True, "drop", "publish", "whole"),  # flagged in /diagnostics only
    (False, True, "publish", "unknown", "unknown"),
    (False, True, "publish", "drop", "withheld"),
    (True, False, "unknown", "drop", "unknown"),  # the camera checks' policy, not the shift's
    (True, True, "unknown", "drop", "withheld"),  # the stricter of the two
    (True, True, "publish", "unknown", "unknown"),
])
def test_degraded_and_shift_policies_share_one_path(degraded, shifted, degraded_policy, shift_policy, want):
    pipe = FramePipeline(NS(shift_limit=5.5), degraded_policy=degraded_policy,  # type: ignore[arg-type]
                         shift_policy=shift_policy)
    seg = _segmentation(shifted)
    found = [NS(text="dark")] if degraded else []
    result = pipe.result(NS(), seg, found, ["mask", "cost"])  # type: ignore[arg-type]
    assert result.withheld is (want == "withheld") and result.shifted is shifted
    assert set(result.outputs) == (set() if want == "withheld" else {"mask", "cost"})
    if want != "withheld":  # a withheld frame projects nothing either (Camera.ground_frame)
        assert bool((result.known_mask == 255).all()) is (want == "unknown")
    assert pipe.health.shifted == int(shifted) and pipe.health.novel_pixels == 2
    if shifted:
        assert pipe.health.last_shift == "frame unlike the training data (shift 7.1 > 5.5)"


def test_diagnostics_report_the_last_frames_novelty_and_warn_while_frames_are_shifted():
    health = Health("/image")
    health.frame_scored(120, 7.14, True, 5.5)
    health.frame_done(Stamp(1, 0), 1.01, done_at=100.0)
    level, msg, values = health.report(health.counts(1, 0, 0), 100.0)
    assert (level, msg) == (WARN, "frame unlike the training data (shift 7.1 > 5.5): 1 of 1 frames so far")
    assert FrameNotes().note(NS(conditions=[], shifted=True), health, 0) == (  # type: ignore[arg-type]
        "warning", "frame unlike the training data (shift 7.1 > 5.5) on /image")  # logged, at most every 5 s
    assert (dict(values)["novel_pixels"], dict(values)["shift"], dict(values)["shifted_frames"]) == ("120", "7.14", "1")
    health.frame_scored(None, 3.0, False, 5.5)  # novel_threshold off: no count
    health.frame_done(Stamp(2, 0), 2.01, done_at=100.5)
    level, msg, values = health.report(health.counts(2, 0, 0), 101.0)
    assert level == OK and "unlike" not in msg
    assert (dict(values)["novel_pixels"], dict(values)["shift"], dict(values)["shifted_frames"]) == ("n/a", "3.00", "1")
    nothing = Health("/image")
    fresh = dict(nothing.report(nothing.counts(0, 0, 0), 0.0)[2])
    assert (fresh["novel_pixels"], fresh["shift"]) == ("n/a", "n/a")  # nothing scored yet
