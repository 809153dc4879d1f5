"""The load sensor on a virtual timeline (samples given, no loop sampled), and admission's verdicts."""

from __future__ import annotations

import pytest

from voice_assistant.config import Settings
from voice_assistant.load import SAMPLE_EVERY_S, WINDOW_S, LoadLimits, LoadSensor
from voice_assistant.metrics import Metrics
from voice_assistant.web.admission import Admission
from voice_assistant.web.errors import ApiError

pytestmark = pytest.mark.unit

LIMITS = LoadLimits(max_lag_s=0.1, max_cpu=0.5)


class Timeline:
    """Feeds a sensor one sample per `SAMPLE_EVERY_S`, with the lag and loop CPU share the test says."""

    def __init__(self, sensor: LoadSensor) -> None:
        self.sensor = sensor
        self.at = 1000.0
        self.cpu_s = 12.0

    def run(self, seconds: float, *, lag_s: float = 0.001, cpu: float = 0.02) -> None:
        for _ in range(round(seconds / SAMPLE_EVERY_S)):
            self.at += SAMPLE_EVERY_S
            self.cpu_s += cpu * SAMPLE_EVERY_S
            self.sensor.observe(at=self.at, lag_s=lag_s, cpu_s=self.cpu_s)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def timeline(metrics: Metrics) -> Timeline:
    return Timeline(LoadSensor(LIMITS, metrics))


def test_an_idle_loop_is_not_overloaded(timeline: Timeline) -> None:
    timeline.run(10)
    assert timeline.sensor.overload is None
    assert timeline.sensor.cpu == pytest.approx(0.02)
    assert timeline.sensor.lag_s == pytest.approx(0.001)


def test_a_lagging_loop_is_overloaded_and_stays_so_until_well_under_the_limit(timeline: Timeline) -> None:
    timeline.run(10)
    timeline.run(0.5, lag_s=0.4)  # a short spike: the window's mean stays under the limit
    assert timeline.sensor.overload is None
    timeline.run(2, lag_s=0.4)
    assert timeline.sensor.overload is not None and "lag" in timeline.sensor.overload
    timeline.run(WINDOW_S * 2, lag_s=0.08)  # under the limit, not under the resume mark: no flapping
    assert timeline.sensor.overload is not None
    timeline.run(WINDOW_S * 2, lag_s=0.05)
    assert timeline.sensor.overload is None


def test_a_busy_loop_thread_is_overloaded_by_its_cpu_share(timeline: Timeline, metrics: Metrics) -> None:
    timeline.run(WINDOW_S * 2, cpu=0.6)
    assert timeline.sensor.overload == "event loop at 60% of a core > 50%"
    assert metrics.registry.get_sample_value("va_overloaded") == 1.0
    assert metrics.registry.get_sample_value("va_event_loop_cpu_ratio") == pytest.approx(0.6)
    timeline.run(WINDOW_S * 2, cpu=0.4)
    assert timeline.sensor.overload is not None
    timeline.run(WINDOW_S * 2, cpu=0.3)
    assert timeline.sensor.overload is None
    assert metrics.registry.get_sample_value("va_overloaded") == 0.0


def test_the_first_sample_alone_says_nothing_of_cpu(metrics: Metrics) -> None:
    sensor = LoadSensor(LIMITS, metrics)
    sensor.observe(at=5.0, lag_s=0.0, cpu_s=99.0)  # the CPU time since the process began
    assert sensor.cpu == 0.0 and sensor.overload is None


def test_admission_refuses_offers_while_overloaded_full_or_draining(
    timeline: Timeline, metrics: Metrics
) -> None:
    admission = Admission(Settings(max_sessions=1, retry_after_s=7), load=timeline.sensor, metrics=metrics)
    assert admission.refusal(offer=True) is None
    admission.admit_offer()

    with metrics.live_sessions.held():
        full = admission.refusal(offer=True)
        assert full is not None and full.kind == "full"
        assert admission.refusal(offer=False) is None  # calls have their own limit
        with pytest.raises(ApiError) as refused:
            admission.admit_offer()
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "7"}
    assert "try again in 7 s" in refused.value.detail

    timeline.run(WINDOW_S * 2, lag_s=0.3)
    overloaded = admission.refusal(offer=False)
    assert overloaded is not None and overloaded.kind == "overloaded"

    admission.start_draining()
    draining = admission.refusal(offer=False)
    assert draining is not None and draining.kind == "draining"
    assert metrics.registry.get_sample_value("va_refused_total", {"reason": "full"}) == 1.0
    assert metrics.registry.get_sample_value("va_draining") == 1.0
