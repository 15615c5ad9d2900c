"""Fixtures shared by this package's tests (other packages import them the same way)."""

from action_diffusion_policy.testing.bag_fixture import bag_replay, sample_bag  # noqa: F401
