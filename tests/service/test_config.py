"""Configuration from the environment: malformed values fail at start-up, naming the variable."""

from __future__ import annotations

import pytest

from service.config import load_config


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_non_finite_or_negative_poll_interval_is_refused(value):
    # NaN passed a "< 0" check and made the poller spin without pause; inf killed the poller thread
    with pytest.raises(ValueError, match="MODEL_POLL_SECONDS"):
        load_config(environ={"MODEL_POLL_SECONDS": value})


def test_valid_values_are_converted():
    config = load_config({"MAX_BATCH": "8"}, environ={"MODEL_POLL_SECONDS": "0.5"})
    assert config.max_batch == 8 and config.model_poll_seconds == 0.5
