"""Why a run stopped, named from Ray's errors (pipeline.driver.stopped): cases not about lost
nodes or storage, which tests/test_lost.py covers with real clusters."""
from __future__ import annotations

import ray.exceptions

from pageray.pipeline.driver.stopped import stopped_by
from pageray.pipeline.errors import ActorsNotStarted


def test_actors_that_never_start_are_named_with_the_fix():
    # the text Ray Data raises when a pool's actors are not up within wait_for_min_actors_s
    exc = ray.exceptions.GetTimeoutError("Timed out while starting actors. This may mean that the cluster does not "
                                         "have enough resources for the requested actor pool.")
    stopped = stopped_by(exc, "out", None, {})
    assert isinstance(stopped, ActorsNotStarted)
    assert "--actors" in str(stopped) and "no page was processed" in str(stopped)


def test_any_other_timeout_goes_up_as_it_is():
    assert stopped_by(ray.exceptions.GetTimeoutError("Get timed out: some object"), "out", None, {}) is None
