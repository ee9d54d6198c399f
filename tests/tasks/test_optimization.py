"""The optimizer set-up: a constructor that refuses its settings is reported naming the config node."""

from functools import partial

import pytest
import torch

from surrogates.tasks.optimization import optimizer_config


def _parameters():
    return [torch.nn.Parameter(torch.zeros(2))]


@pytest.mark.parametrize(
    ("settings", "reason"),
    [({"lr": "abc"}, "not supported between"), ({"lr": -1.0}, "Invalid learning rate"), ({"lrr": 0.1}, "lrr")],
)
def test_an_optimizer_refusing_its_settings_names_the_node_the_class_and_the_settings(settings, reason):
    with pytest.raises(ValueError, match=rf"^task\.optimizer \(Adam with {{'lrr?': [^)]*}}\): .*{reason}") as refused:
        optimizer_config(_parameters(), partial(torch.optim.Adam, **settings))
    assert isinstance(refused.value.__cause__, (TypeError, ValueError))


def test_a_scheduler_refusing_its_settings_names_its_node():
    with pytest.raises(ValueError, match=r"^task\.scheduler \(StepLR with {'step_size': 1, 'gammma': 0\.5}\): .*gammma"):
        optimizer_config(
            _parameters(), partial(torch.optim.SGD, lr=0.1), partial(torch.optim.lr_scheduler.StepLR, step_size=1, gammma=0.5)
        )


def test_good_settings_build_the_optimizer_and_its_scheduler():
    config = optimizer_config(_parameters(), partial(torch.optim.SGD, lr=0.1), partial(torch.optim.lr_scheduler.StepLR, step_size=3))
    assert isinstance(config["optimizer"], torch.optim.SGD) and config["optimizer"].defaults["lr"] == 0.1
    assert config["lr_scheduler"]["scheduler"].step_size == 3
