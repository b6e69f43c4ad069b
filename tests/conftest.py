import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _few_threads():
    # Two-core CI: keep each test from oversubscribing the machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def one_thread():
    # Block processing runs many small ops: on a shared 2-core machine a second intra-op thread
    # only adds contention (10x slower seen here), so the inference tests use one.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """A tiny trained checkpoint and its TorchScript export: {"ckpt": path, "exported": path}."""
    from model_helpers import export_file, make_checkpoint

    root = tmp_path_factory.mktemp("models")
    ckpt = make_checkpoint(root / "tiny.ckpt")
    return {"ckpt": ckpt, "exported": export_file(ckpt, root / "tiny.pt")}
