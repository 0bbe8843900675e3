"""TrainConfig read through pipeline.settings: field-named errors, lists as tuples, unknown keys refused."""

from __future__ import annotations

import json

import pytest

from model.config import TrainConfig
from pipeline.errors import ConfigError


def test_json_config_round_trips_with_tuples(tmp_path):
    f = tmp_path / "train.json"
    f.write_text(json.dumps({"model": {"variant": "shared"}, "seeds": [0, 1], "split": [0.6, 0.2, 0.2]}))
    cfg = TrainConfig.load(f)
    assert (cfg.model.variant, cfg.seeds, cfg.split) == ("shared", (0, 1), (0.6, 0.2, 0.2))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "data, message",
    [
        ({"model": {"lr": 1e-3}}, "model.lr: unknown setting"),
        ({"lr": "fast"}, "lr: Input should be a valid number"),
        ({"model": {"d_model": "big"}}, "model.d_model: Input should be a valid integer"),
        ({"model": {"variant": "nonsense"}}, "model.variant='nonsense' is not one of"),
        ({"tasks": "style"}, "tasks: Input should be a valid tuple"),
    ],
)
def test_bad_config_names_the_field(data, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(data)
    assert message in str(err.value)
