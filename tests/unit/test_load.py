"""The load sensor on a virtual timeline (samples given, no loop sampled), and admission's verdicts."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import pytest

from voice_assistant.audio_rate import MIN_STREAMS, ReceivedSeconds
from voice_assistant.config import Settings
from voice_assistant.load import SAMPLE_EVERY_S, WINDOW_S, LoadLimits, LoadSensor
from voice_assistant.metrics import Metrics
from voice_assistant.web.admission import Admission
from voice_assistant.web.errors import ApiError

pytestmark = pytest.mark.unit

LIMITS = LoadLimits(max_lag_s=0.1, max_cpu=0.5, min_audio_rate=0.9)


class Timeline:
    """Feeds a sensor one sample per `SAMPLE_EVERY_S`, with the lag and loop CPU share the test says, and
    each connected stream the share of real time it is set to receive."""

    def __init__(self, sensor: LoadSensor) -> None:
        self.sensor = sensor
        self.at = 1000.0
        self.cpu_s = 12.0
        self.streams: dict[ReceivedSeconds, float] = {}
        """Each stream's report of received seconds -> the share of real time it receives."""

    def run(self, seconds: float, *, lag_s: float = 0.001, cpu: float = 0.02) -> list[str | None]:
        """The verdict after each sample."""
        verdicts = []
        for _ in range(round(seconds / SAMPLE_EVERY_S)):
            self.at += SAMPLE_EVERY_S
            self.cpu_s += cpu * SAMPLE_EVERY_S
            for received, rate in self.streams.items():
                received(rate * SAMPLE_EVERY_S)
            self.sensor.observe(at=self.at, lag_s=lag_s, cpu_s=self.cpu_s)
            verdicts.append(self.sensor.overload)
        return verdicts

    @contextlib.contextmanager
    def connected(self, count: int, rate: float = 1.0) -> Iterator[list[ReceivedSeconds]]:
        """`count` streams connected until the block ends, each receiving `rate` of real time."""
        with contextlib.ExitStack() as stack:
            streams = [stack.enter_context(self.sensor.audio.connected()) for _ in range(count)]
            self.streams.update(dict.fromkeys(streams, rate))
            try:
                yield streams
            finally:
                for stream in streams:
                    del self.streams[stream]

    def receive(self, streams: list[ReceivedSeconds], rate: float) -> None:
        self.streams.update(dict.fromkeys(streams, rate))


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


LOSING = "the median connected stream received 80% of its audio in real time < 90%"


def test_streams_that_receive_in_real_time_are_no_overload(timeline: Timeline, metrics: Metrics) -> None:
    with timeline.connected(10):
        assert set(timeline.run(WINDOW_S * 3)) == {None}
        assert timeline.sensor.audio_rate == pytest.approx(1.0)
        assert metrics.registry.get_sample_value("va_audio_rate_ratio") == pytest.approx(1.0)


def test_streams_that_lose_audio_overload_the_process_until_well_back(
    timeline: Timeline, metrics: Metrics
) -> None:
    """Lag and CPU stay low, as they did at 100 sessions on shared cores: only the lost audio shows."""
    with timeline.connected(10) as streams:
        timeline.run(WINDOW_S * 2)
        timeline.receive(streams, 0.8)
        timeline.run(WINDOW_S * 2)
        assert timeline.sensor.overload == LOSING
        assert metrics.registry.get_sample_value("va_overloaded") == 1.0
        assert metrics.registry.get_sample_value("va_audio_rate_ratio") == pytest.approx(0.8)
        timeline.receive(streams, 0.92)  # above the limit, not above the resume mark (93%): no flapping
        assert None not in timeline.run(WINDOW_S * 2)
        timeline.receive(streams, 0.97)
        timeline.run(WINDOW_S * 2)
        assert timeline.sensor.overload is None


def test_streams_that_join_are_judged_only_once_connected_a_whole_window(timeline: Timeline) -> None:
    """A new stream's first moments are uneven (its first packets, the audio held while its session
    opened): judged over them alone, it would read short or long."""
    with timeline.connected(MIN_STREAMS):
        timeline.run(WINDOW_S * 2)
        timeline.run(WINDOW_S / 2)  # mid-window
        with timeline.connected(MIN_STREAMS * 2, rate=0.0) as joined:  # twice as many: the median
            verdicts = timeline.run(0.2)
            timeline.receive(joined, 1.0)
            verdicts += timeline.run(WINDOW_S * 2)
            assert set(verdicts) == {None}
            assert timeline.sensor.audio_rate == pytest.approx(1.0)


def test_streams_that_leave_are_forgotten_at_once(timeline: Timeline) -> None:
    """A leaving stream's last window is partial: it would read short, as if the process had lost it."""
    with timeline.connected(MIN_STREAMS):
        with timeline.connected(MIN_STREAMS * 2):
            timeline.run(WINDOW_S * 2)
            timeline.run(WINDOW_S / 2)
        assert set(timeline.run(WINDOW_S * 2)) == {None}
        assert timeline.sensor.audio_rate == pytest.approx(1.0)


def test_a_few_clients_on_lossy_networks_or_gone_silent_do_not_shut_the_worker(timeline: Timeline) -> None:
    """Overload takes audio from every stream; a client's own network, or a peer gone before its
    connection closes, only from its own."""
    with timeline.connected(MIN_STREAMS - 1, rate=0.5):  # too few to tell
        assert set(timeline.run(WINDOW_S * 2)) == {None}
        assert timeline.sensor.audio_rate is None
        with timeline.connected(MIN_STREAMS, rate=0.0), timeline.connected(MIN_STREAMS + 1):
            assert set(timeline.run(WINDOW_S * 2)) == {None}
            assert timeline.sensor.audio_rate == pytest.approx(1.0)


def test_a_min_audio_rate_of_zero_judges_no_lost_audio(metrics: Metrics) -> None:
    timeline = Timeline(LoadSensor(LoadLimits(max_lag_s=0.1, max_cpu=0.5, min_audio_rate=0.0), metrics))
    with timeline.connected(10, rate=0.2):
        assert set(timeline.run(WINDOW_S * 2)) == {None}
        assert timeline.sensor.audio_rate == pytest.approx(0.2)  # still measured, for /metrics
        timeline.run(WINDOW_S * 2, lag_s=0.4)
        timeline.run(WINDOW_S * 2)  # nor does the lost audio hold back the resume
        assert timeline.sensor.overload is None


def test_too_few_streams_export_no_audio_rate(timeline: Timeline, metrics: Metrics) -> None:
    timeline.run(WINDOW_S * 2)
    value = metrics.registry.get_sample_value("va_audio_rate_ratio")
    assert value is not None and math.isnan(value)


def test_admission_refuses_new_work_while_the_streams_lose_audio(
    timeline: Timeline, metrics: Metrics
) -> None:
    admission = Admission(Settings(), load=timeline.sensor, metrics=metrics)
    with timeline.connected(10, rate=0.8):
        timeline.run(WINDOW_S * 2)
        refusal = admission.refusal(offer=False)
    assert refusal is not None and refusal.kind == "overloaded"
    assert refusal.reason == f"the server is overloaded ({LOSING})"
