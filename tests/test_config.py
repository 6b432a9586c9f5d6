from pathlib import Path

import pytest

from kbqa.config import Config


def test_env_overrides_and_types():
    cfg = Config.from_env(env={"KBQA_INDEX_DIR": "/tmp/x", "KBQA_PORT": "9000",
                               "KBQA_ENCODERS": "use,minilm", "KBQA_SOURCES": "a,b",
                               "KBQA_MIN_DENSE_SCORE": "0.2"})
    assert cfg.index_dir == Path("/tmp/x") and cfg.port == 9000
    assert cfg.encoders == ("use", "minilm") and cfg.sources == (Path("a"), Path("b"))
    assert cfg.min_dense_score == 0.2


def test_explicit_overrides_beat_env():
    assert Config.from_env(env={"KBQA_PORT": "9000"}, port=1234).port == 1234


def test_bad_env_value_names_the_variable():
    with pytest.raises(ValueError, match="KBQA_PORT"):
        Config.from_env(env={"KBQA_PORT": "eighty"})
