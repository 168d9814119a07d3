"""One grammar for `synthetic_<domain>_<split>`, applied alike by the training registry, the test registry and the
metric registry."""
from __future__ import annotations

import pytest

from lib.datasets.synthetic import SyntheticName, parse_synthetic_name
from lib.test.analysis.metrics import benchmark_spec
from lib.test.evaluation.datasets import get_dataset
from lib.train.dataset import build_train_dataset
from test_eval_helpers import make_env
from tests.test_datasets import write_env
from tests.test_datasets_fixtures import make_got10k


@pytest.mark.parametrize("name, parsed", [
    ("synthetic_a_train", SyntheticName("a", "train")),
    ("synthetic_shapes_hard_val", SyntheticName("shapes_hard", "val")),
    ("synthetic_B2_test", SyntheticName("B2", "test")),
])
def test_names_parse_to_domain_and_split(name, parsed):
    assert parse_synthetic_name(name) == parsed


@pytest.mark.parametrize("name", ["synthetic_a", "synthetic__val", "synthetic_a_", "synthetic_a-b_val",
                                  "synthetic_a__val", "synthetic_a_val "])
def test_malformed_names_are_refused_the_same_way_everywhere(name, tmp_path):
    message = r"synthetic dataset names are synthetic_<domain>_<split>"
    with pytest.raises(ValueError, match=message):
        parse_synthetic_name(name)
    with pytest.raises(ValueError, match=message):
        build_train_dataset(name, write_env(tmp_path, tmp_path / "data"))
    with pytest.raises(ValueError, match=message):
        get_dataset(name, make_env(tmp_path, synthetic_path=str(tmp_path / "data" / "synthetic")))
    with pytest.raises(ValueError, match=message):
        benchmark_spec(name)


def test_a_domain_with_an_underscore_reads_the_same_folder_for_training_and_testing(tmp_path):
    data = tmp_path / "data"
    make_got10k(str(data / "synthetic" / "shapes_hard"), "val", ("s1", "s2"), frames=3)
    training = build_train_dataset("synthetic_shapes_hard_val", write_env(tmp_path, data))
    testing = get_dataset("synthetic_shapes_hard_val", make_env(tmp_path, synthetic_path=str(data / "synthetic")))
    assert [training.sequence(i).name for i in range(training.num_sequences())] == ["s1", "s2"]
    assert [s.name for s in testing] == ["s1", "s2"]
    assert benchmark_spec("synthetic_shapes_hard_val").protocols == ("got10k", "ope")
