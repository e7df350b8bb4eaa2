"""Back-off and keepalive bookkeeping (pure, with an injected clock and random source)."""
from __future__ import annotations

import pytest

from drivers.asterisk.session import AmiSettings
from drivers.asterisk.transport import BackoffPolicy, Keepalive


def test_backoff_doubles_up_to_its_cap():
    policy = BackoffPolicy(base_s=0.5, max_s=4.0)
    assert [policy.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_jitter_stays_within_its_band():
    policy = BackoffPolicy(base_s=1.0, max_s=10.0, jitter=0.2)
    assert policy.delay(0, rand=lambda: 0.0) == pytest.approx(0.8)
    assert policy.delay(0, rand=lambda: 1.0) == pytest.approx(1.2)


def test_backoff_rejects_nonsense():
    with pytest.raises(ValueError):
        BackoffPolicy(base_s=5.0, max_s=1.0)


def test_time_scale_shrinks_link_timers_with_floors():
    scaled = AmiSettings(keepalive_s=20.0, ping_timeout_s=5.0, backoff=BackoffPolicy(0.5, 30.0)).scaled(0.01)
    assert scaled.backoff.base_s == pytest.approx(0.01) and scaled.backoff.max_s == pytest.approx(0.3)
    assert scaled.keepalive_s == 0.5 and scaled.ping_timeout_s == 1.0
    assert scaled.action_timeout_s == 10.0


def test_keepalive_pings_when_idle_and_declares_death_when_unanswered():
    now = [0.0]
    keepalive = Keepalive(interval_s=10, timeout_s=5, clock=lambda: now[0])
    now[0] = 9.9
    assert not keepalive.ping_due()
    now[0] = 10.0
    assert keepalive.ping_due()
    keepalive.ping_sent()
    assert not keepalive.ping_due() and not keepalive.expired()
    now[0] = 14.0
    keepalive.pong()
    assert not keepalive.expired()
    keepalive.data_received()
    now[0] = 24.0
    keepalive.ping_sent()
    now[0] = 29.0
    assert keepalive.expired()


def test_keepalive_can_be_disabled():
    keepalive = Keepalive(interval_s=0, timeout_s=5, clock=lambda: 1e9)
    assert not keepalive.ping_due()
