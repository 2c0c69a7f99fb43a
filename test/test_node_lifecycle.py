"""`segmentation_node --lifecycle`: a managed node driven through the
lifecycle_msgs services, as `ros2 lifecycle set` and Nav2's lifecycle manager
drive it."""

from __future__ import annotations

import signal

import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rosutil import image_cdr, random_rgb
from sensor_msgs.msg import Image

NODE = "/segmentation_node"


def _set(peer, transition: int) -> bool:
    return peer.call(ChangeState, f"{NODE}/change_state", ChangeState.Request(
        transition=Transition(id=transition))).success


def _state(peer) -> str:
    return peer.call(GetState, f"{NODE}/get_state", GetState.Request()).current_state.label


def _frame_gets_a_mask(peer, pub, masks, sec: int) -> bool:
    peer.send_until(pub, image_cdr(random_rgb(), sec=sec), lambda: any(m.header.stamp.sec == sec for m in masks),
                    what=f"the mask of frame {sec}")
    return True


def test_transitions_and_their_failure_paths(start_node, peer, tiny_artifact, tmp_path):
    node = start_node(model=str(tmp_path / "not_there"), lifecycle=True)
    node.wait_for_line("lifecycle")  # waiting unconfigured
    assert _state(peer) == "unconfigured"
    masks = peer.collect(Image, f"{NODE}/mask")
    pub = peer.publisher(Image, "/image")

    # configure fails cleanly (missing model): back to unconfigured, the reason logged.
    assert not _set(peer, Transition.TRANSITION_CONFIGURE)
    assert _state(peer) == "unconfigured" and "not_there does not exist" in node.output

    # Fix the parameter, as `ros2 param set` does, and configure again: loaded and warmed up, inactive.
    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(tiny_artifact))
    peer.call(SetParameters, f"{NODE}/set_parameters", SetParameters.Request(
        parameters=[Parameter(name="model", value=value)]))
    assert _set(peer, Transition.TRANSITION_CONFIGURE) and _state(peer) == "inactive"
    assert node.output.count("warming up") == 1
    assert peer.node.count_subscribers("/image") == 0  # inactive: not subscribed

    assert _set(peer, Transition.TRANSITION_ACTIVATE) and _state(peer) == "active"
    peer.wait_for_subscriber(pub)
    assert _frame_gets_a_mask(peer, pub, masks, 1)

    # deactivate: no processing, the model stays loaded.
    assert _set(peer, Transition.TRANSITION_DEACTIVATE) and _state(peer) == "inactive"
    peer.spin_until(lambda: peer.node.count_subscribers("/image") == 0, what="the subscription to go")
    pub.publish(image_cdr(random_rgb(), sec=2))  # nobody takes it
    assert _set(peer, Transition.TRANSITION_ACTIVATE)
    peer.wait_for_subscriber(pub)
    assert _frame_gets_a_mask(peer, pub, masks, 3)
    # One writer sends in order: had frame 2 been processed, its mask would
    # have gone out before frame 3's.
    assert not any(m.header.stamp.sec == 2 for m in masks)
    assert node.output.count("warming up") == 1  # not reloaded

    # cleanup frees the model; configure loads it again.
    assert _set(peer, Transition.TRANSITION_DEACTIVATE) and _set(peer, Transition.TRANSITION_CLEANUP)
    assert _state(peer) == "unconfigured" and "model released" in node.output

    # shutdown from unconfigured: finalized, and the process exits cleanly.
    assert _set(peer, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert node.wait(30) == 0 and "Traceback" not in node.output


@pytest.mark.parametrize("state", ["unconfigured", "inactive", "active"])
def test_ctrl_c_from_any_state_exits_cleanly(start_node, peer, state):
    node = start_node(lifecycle=True)
    node.wait_for_line("lifecycle")
    if state != "unconfigured":
        assert _set(peer, Transition.TRANSITION_CONFIGURE)
    if state == "active":
        assert _set(peer, Transition.TRANSITION_ACTIVATE)
    assert _state(peer) == state
    node.send(signal.SIGINT)
    node.send(signal.SIGINT)
    assert node.wait(30) == 0 and "Traceback" not in node.output, node.output


@pytest.mark.signals
@pytest.mark.parametrize("delivery", ["SIGINT twice", "SIGTERM"])
@pytest.mark.parametrize("stage", ["loading model", "warming up"])
def test_a_signal_during_the_configure_transition_exits_cleanly(start_node, peer, stage, delivery):
    """Ctrl-C while `configure` is loading or warming up the model (inside the
    service call): the node leaves without waiting for the load to finish."""
    node = start_node(lifecycle=True)
    node.wait_for_line("lifecycle")
    client = peer.node.create_client(ChangeState, f"{NODE}/change_state")
    peer.spin_until(client.service_is_ready, 60, "the change_state service")
    client.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
    peer.spin_until(lambda: stage in node.output, 60, f"{stage!r} in the node's log")
    if delivery == "SIGTERM":
        node.send(signal.SIGTERM)
    else:
        node.send(signal.SIGINT)
        node.send(signal.SIGINT)
    assert node.wait(30) == 0, node.output
    assert "Traceback" not in node.output and "KeyboardInterrupt" not in node.output, node.output
