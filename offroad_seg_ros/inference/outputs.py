"""The Segmenter's outputs, one definition: name, sensor_msgs/Image encoding, what it holds.

The Segmenter makes any of `OUTPUTS` on request (inference/segmenter.py); the
node publishes the `IMAGE_OUTPUTS` as ~/<name>, each switched by its
publish_<name> parameter (node/params.py builds them from this list), and
projects `KNOWN_MASK` onto the ground.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Output:
    name: str  # the Segmentation field, the node's ~/<name> topic and publish_<name> parameter
    encoding: str  # sensor_msgs/Image encoding of its uint8 array
    description: str
    published: bool  # publish_<name>'s default
    on_demand: bool = False  # costly rgb8: the node computes it only while ~/<name> has a subscriber


# The node's per-camera image outputs, in the order they are published.
IMAGE_OUTPUTS = (
    Output("mask", "mono8", "class indices, 255 = no prediction", True),
    Output("cost", "mono8", "Nav2 cost, 255 = unknown", True),
    Output("confidence", "mono8", "calibrated max softmax x 255", False),
    Output("novelty", "mono8", "novelty score, 128 = the novel_threshold (needs the artifact's novelty statistics)",
           False),
    Output("color", "rgb8", "class colours", True, on_demand=True),
    Output("overlay", "rgb8", "input blended with the class colours", True, on_demand=True),
)
# The mask with pixels below min_confidence set to 255 and novel pixels to the class table's
# novel_index: what the ground outputs project, never published.
KNOWN_MASK = "known_mask"
OUTPUTS: tuple[str, ...] = (*(o.name for o in IMAGE_OUTPUTS), KNOWN_MASK)
ENCODINGS = {o.name: o.encoding for o in IMAGE_OUTPUTS}
ON_DEMAND = frozenset(o.name for o in IMAGE_OUTPUTS if o.on_demand)
