"""The tool tests run many tools in this process (mmrkan.testing.tools.run_script) under pytest's
``capsys``, whose streams are closed after each test. mmengine logs through its most recently
made logger, whose handler keeps the stream it was made with: after each test a new one is made
on the stream pytest keeps, so that a later tool does not log into a closed one ("--- Logging
error ---" on stderr)."""
import itertools

import pytest
from mmengine.logging import MMLogger

_NAMES = (f'test-tools-{i}' for i in itertools.count())


@pytest.fixture(autouse=True)
def logger_on_a_live_stream():
    yield
    MMLogger.get_instance(next(_NAMES), log_level='WARNING')
