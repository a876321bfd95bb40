"""The public API is small and pinned (httpx's test_exported_members)."""

import iolab


def test_exported_members() -> None:
    assert sorted(iolab.__all__) == sorted(
        ["RunConfig", "RunResult", "ScenarioSpec", "__version__", "load_results", "run_experiment"]
    )
    for name in iolab.__all__:
        assert hasattr(iolab, name)


def test_logging_exported_members() -> None:
    import iolab.logging

    assert sorted(iolab.logging.__all__) == sorted(
        ["POLICIES", "BatchHandler", "DeferredHandler", "Policy", "flush_all", "install", "install_sigterm_flush"]
    )
    for name in iolab.logging.__all__:
        assert hasattr(iolab.logging, name)
