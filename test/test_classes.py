import numpy as np
import pytest

from offroad_seg_ros.core.classes import IGNORE_INDEX, ClassTable, UnknownRawIdError

DUALITY_RAW = [100, 200, 300, 500, 550, 600, 700, 800, 7100, 10000]


def test_table_matches_design(table):
    assert table.raw_ids == DUALITY_RAW
    assert table.names[5] == "Flowers"
    assert table.cost_lut()[table.index_of("Landscape")] == 0
    assert table.cost_lut()[table.index_of("Sky")] == 255
    assert table.cost_lut()[table.index_of("Rocks")] == 254
    assert {c.group for c in table.classes} == {"free", "rough", "obstacle", "sky"}


def test_remap_every_raw_id_and_ignore(table):
    raw = np.array([[0, *DUALITY_RAW]], dtype=np.uint16)
    out = table.remap(raw)
    assert out.dtype == np.uint8 and out.shape == raw.shape
    assert out.tolist() == [[IGNORE_INDEX, *range(10)]]


def test_remap_keeps_shape_of_3d_batches(table):
    raw = np.random.default_rng(0).choice(DUALITY_RAW, size=(2, 5, 7)).astype(np.uint16)
    out = table.remap(raw)
    assert out.shape == (2, 5, 7)
    assert (table.to_raw(out) == raw).all()


def test_unknown_ids_are_named_with_counts_and_file(table):
    raw = np.full((4, 4), 7100, np.uint16)
    raw[0, :3] = 42
    raw[3, 3] = 9999
    with pytest.raises(UnknownRawIdError) as err:
        table.remap(raw, source="frame_17.png")
    msg = str(err.value)
    assert "42 (3 px)" in msg and "9999 (1 px)" in msg and "frame_17.png" in msg
    assert err.value.values == {42: 3, 9999: 1}


def test_unknown_ids_can_be_ignored_explicitly(table):
    raw = np.array([[42, 100]], np.uint16)
    assert table.remap(raw, ignore_unknown=True).tolist() == [[IGNORE_INDEX, 0]]


def test_remap_rejects_non_uint16(table):
    with pytest.raises(TypeError, match="uint16"):
        table.remap(np.zeros((2, 2), np.uint8))


def test_round_trip_through_dict(table):
    assert ClassTable.from_dict(table.to_dict()) == table


def test_cost_overrides_and_bad_values(table):
    lut = table.cost_lut({"Dry Grass": 60})
    assert lut[table.index_of("Dry Grass")] == 60 and lut[IGNORE_INDEX] == 255
    with pytest.raises(ValueError, match="outside"):
        table.cost_lut({"Dry Grass": 300})
    with pytest.raises(KeyError, match="no class named"):
        table.cost_lut({"Cactus": 3})


def test_color_lut(table):
    lut = table.color_lut()
    assert lut.shape == (256, 3) and tuple(lut[table.index_of("Sky")]) == table.classes[9].color


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d["classes"].append(dict(d["classes"][0])), "duplicate"),
        (lambda d: d["classes"][0].update(raw_id=0), "ignore ID"),
        (lambda d: d["classes"][0].update(group="lava"), "group"),
        (lambda d: d["classes"][0].update(cost=999), "cost"),
        (lambda d: d["classes"][0].pop("name"), "missing"),
    ],
)
def test_invalid_tables_are_rejected(table, tmp_path, mutate, match):
    import yaml

    data = table.to_dict()
    mutate(data)
    path = tmp_path / "classes.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=match) as err:
        ClassTable.from_yaml(path)
    assert str(path) in str(err.value)
