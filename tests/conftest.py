import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture
def one_torch_thread():
    """Tiny models: extra threads only add contention on a 2-core CI machine, and one thread is
    what the mining workers use too."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs, like the CI machine)."""
    import ray

    for attempt in range(3):
        if ray.is_initialized():
            break
        try:
            # address="local": never join another Ray that happens to run on this machine
            ray.init(address="local", num_cpus=2, dashboard_host="127.0.0.1", include_dashboard=True,
                     log_to_driver=False, configure_logging=False)
        except Exception:
            # Ray gives its raylet a fixed 30 s to register; on a machine busy with other work
            # that can run out, and a second start succeeds
            ray.shutdown()
            if attempt == 2:
                raise
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A small generated MER 2024-layout corpus shared by the end-to-end tests."""
    from mer_ray.corpus.demo import DemoCorpusConfig, make_demo_corpus

    root = tmp_path_factory.mktemp("corpus") / "tiny"
    return make_demo_corpus(root, DemoCorpusConfig(n_labeled=60, n_unlabeled=200, n_test=40, seed=3))
