import pytest


@pytest.fixture
def missing_keys_reported(monkeypatch) -> list:
    """The missing keys that mmengine's ``load_state_dict`` warns about (it does not raise),
    collected from the start of the test."""
    import mmengine.runner.checkpoint as checkpoint_module
    reports = []
    print_log = checkpoint_module.print_log

    def keep(message, *args, **kwargs):
        for line in str(message).splitlines():
            if line.startswith('missing keys in source state_dict: '):
                reports.extend(line.split(': ', 1)[1].split(', '))
        return print_log(message, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, 'print_log', keep)
    return reports
